"""Hello world: answers every GET on $PORT with a greeting and the name of
the instance that answered (so tests can see requests spread)."""

import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.environ.get("CRASH_ON_START"):
    print("CRASH_ON_START is set: exiting with code 3", flush=True)
    sys.exit(3)

GREETING = os.environ.get("GREETING", "Hello, world")
# As the container's PID 1 the default SIGTERM action is ignored: exit on it.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"{GREETING} from {socket.gethostname()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # Headers and body go out in separate sends: without NODELAY a
        # keep-alive client (nginx) waits on delayed ACKs.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def get_request(self):  # type: ignore[no-untyped-def]
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


print(f"listening on {os.environ['PORT']}", flush=True)
Server(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
