"""HTTP/1.1 backends for benchmarks, each run as its own process:

    python bench/support/backend.py KIND NAME   # prints its port, serves until killed

Both keep connections alive and set TCP_NODELAY on every connection:
Python's http.server writes headers and body in separate sends, and with
Nagle and delayed ACKs a keep-alive connection to it crawls at 25-50
requests/s (see MACHINE-NOTES), which would measure the stall, not the
router. Two kinds:

- ``app``: what a small Python web app does per request, and no more: parse
  the request line and headers into a dict, call a handler, answer JSON
  (its name, the path, a counter) with a Date header. The stand-in for "the
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
from email.utils import formatdate


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


class _App:
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    def handle(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        self.count += 1
        body = {"backend": self.name, "method": method, "path": path, "n": self.count}
        return 200, json.dumps(body).encode()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    if line:
                        key, _, value = line.partition(":")
                        headers[key.strip().lower()] = value.strip()
                if headers.get("content-length"):
                    await reader.readexactly(int(headers["content-length"]))
                status, body = self.handle(method, path, headers)
                head_out = (
                    f"HTTP/1.1 {status} OK\r\nDate: {formatdate(usegmt=True)}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head_out.encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def _serve(kind: str, name: str) -> None:
    body = f'{{"backend": "{name}"}}'.encode()
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    loop = asyncio.get_running_loop()
    if kind == "raw":
        server = await loop.create_server(lambda: _Http(response), "127.0.0.1", 0)
    else:
        server = await asyncio.start_server(_App(name).connection, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in {"app", "raw"}:
        sys.exit("usage: backend.py app|raw NAME")
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))
