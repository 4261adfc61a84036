"""A WebSocket through the router: the Upgrade passes and messages flow
both ways."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from paas.router.routes import Route, Upstream
from paas.router.services import router_apply
from tests.support.router import TestRouter


def _echo(conn: ServerConnection) -> None:
    for message in conn:
        text = message if isinstance(message, str) else message.decode()
        conn.send(f"echo: {text}")


@pytest.fixture
def echo_server() -> Iterator[Server]:
    with serve(_echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server
        server.shutdown()
        thread.join(timeout=10)


def test_a_websocket_passes_through(router: TestRouter, echo_server: Server) -> None:
    port = echo_server.socket.getsockname()[1]
    router_apply(routes=[Route("chat", ("chat.localhost",), (Upstream("127.0.0.1", port),))])
    sock = socket.create_connection(("127.0.0.1", router.http_port), timeout=10)
    with connect(f"ws://chat.localhost:{router.http_port}/live", sock=sock) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "echo: hello"
        ws.send("again")
        assert ws.recv(timeout=10) == "echo: again"
