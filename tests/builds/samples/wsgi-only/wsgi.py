def application(environ, start_response):
    body = b"hello from a lone wsgi.py"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
