"""HTTP/1.1 backends for benchmarks, each run as its own process:

    python bench/support/backend.py KIND NAME   # prints its port, serves until killed

Both keep connections alive and set TCP_NODELAY on every connection:
Python's http.server writes headers and body in separate sends, and with
Nagle and delayed ACKs a keep-alive connection to it crawls at 25-50
requests/s (see MACHINE-NOTES), which would measure the stall, not the
router. Two kinds:

- ``stdlib``: a hello-world app as the platform's samples are written:
  Python's ``http.server`` (a thread per connection), HTTP/1.1 keep-alive,
  TCP_NODELAY on each connection, a JSON answer. A few thousand requests/s,
  the order of a real Python web app per process. The stand-in for "the
  container" in the router's goal.
- ``raw``: the least a server can do (asyncio Protocol, a fixed response
  per blank line seen, no parsing). Against it the router's own cost per
  request shows at its largest.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer


class _Http(asyncio.Protocol):
    def __init__(self, response: bytes) -> None:
        self.response = response
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # Requests without a body (GET): one response per blank line seen.
        self.buf += data
        count = self.buf.count(b"\r\n\r\n")
        if count and self.transport is not None:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(self.response * count)


class _StdlibHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    name = "backend"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        body = json.dumps({"backend": self.name, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _StdlibServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up getfqdn(), which can hang for seconds.
        TCPServer.server_bind(self)

    def handle_error(self, request: object, client_address: object) -> None:
        # wrk resets its connections when it stops: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _serve_stdlib(name: str) -> None:
    handler = type("Handler", (_StdlibHandler,), {"name": name})
    server = _StdlibServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


async def _serve_raw(name: str) -> None:
    body = f'{{"backend": "{name}"}}'.encode()
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(response), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in {"stdlib", "raw"}:
        sys.exit("usage: backend.py stdlib|raw NAME")
    if sys.argv[1] == "stdlib":
        _serve_stdlib(sys.argv[2])
    else:
        asyncio.run(_serve_raw(sys.argv[2]))
