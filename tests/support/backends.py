"""Small HTTP/1.1 backends on loopback for router tests: each answers every
request with a JSON body naming itself and echoing what it received (Host,
path, forwarded headers), keeps connections alive and sets TCP_NODELAY (so
keep-alive through nginx does not stall on Nagle + delayed ACK).

An asyncio server in a thread of the test process: started and stopped with
the block, nothing left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

ECHOED = ("host", "x-forwarded-for", "x-forwarded-proto", "x-request-id", "connection")


@dataclass
class Backend:
    name: str
    port: int
    requests: int = 0
    connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


async def _handle(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with backend._lock:
        backend.connections += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if int(headers.get("content-length", "0") or 0):
                await reader.readexactly(int(headers["content-length"]))
            method, path, _ = request_line.split(" ", 2)
            with backend._lock:
                backend.requests += 1
            body = json.dumps(
                {"backend": backend.name, "method": method, "path": path}
                | {k: headers.get(k) for k in ECHOED}
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


@contextlib.contextmanager
def run_backends(*names: str) -> Iterator[list[Backend]]:
    """One backend per name, each on a free loopback port, for the block."""
    loop = asyncio.new_event_loop()
    backends = [Backend(name, 0) for name in names]
    servers: list[asyncio.Server] = []

    async def start() -> None:
        for backend in backends:
            server = await asyncio.start_server(functools.partial(_handle, backend), "127.0.0.1", 0)
            backend.port = server.sockets[0].getsockname()[1]
            servers.append(server)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
        yield backends
    finally:

        async def stop() -> None:
            for server in servers:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
