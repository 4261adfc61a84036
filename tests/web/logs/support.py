"""Helpers for the log tests: a real agent, signed-in WebSocket clients and
lines to ingest."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from paas.asgi import application
from paas.logs.lines import IngestLine
from paas.logs.models import LogSource
from paas.logs.services import logs_ingest
from tests.support.agent_harness import AgentProcess, cleanup
from tests.support.registry import TestRegistry

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@contextlib.contextmanager
def running_agent(registry: TestRegistry, prefix: str, **env: str) -> Iterator[AgentProcess]:
    """``python -m runtime_agent`` on a short root (overlay options are capped
    at a page) holding the registry's credentials, with ``env`` on top; its
    own port, bridge, subnet and nft table; removed after."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o711)  # containers run as unprivileged ids; runc finds their rootfs as them
    proc = AgentProcess.fresh(root / "agent", **{**registry.agent_env(), **env})
    try:
        proc.start()
        yield proc
    finally:
        cleanup(proc)
        link = root / "agent"  # to the real root, which cleanup removed
        if link.is_symlink() and not link.exists():
            link.unlink()
        if root.exists() and not any(root.iterdir()):
            root.rmdir()


def session_of(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def watcher(
    app_name: str, user: Any | None, *, query: str = "", origin: bytes = b"http://127.0.0.1"
) -> tuple[bool, Any, WebsocketCommunicator]:
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if user is not None:
        session = await sync_to_async(session_of)(user)
        headers.append((b"cookie", f"sessionid={session}".encode()))
    path = f"/ws/apps/{app_name}/logs/" + (f"?{query}" if query else "")
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=10)
    return connected, code, communicator


def line(
    text: str, *, at: int = 0, process: str = "web", instance: str = "web.1",
    source: LogSource = LogSource.APP,
) -> IngestLine:  # fmt: skip
    return IngestLine(
        source=source, timestamp=T0 + timedelta(milliseconds=at), text=text, stream="stdout",
        process_type=process, instance=instance, container=f"c-{instance}",
    )  # fmt: skip


async def ingest(app_id: int, *lines: IngestLine) -> None:
    await sync_to_async(logs_ingest)(app_id=app_id, lines=list(lines))


async def until(communicator: WebsocketCommunicator, kind: str, timeout: float = 10) -> list[Any]:
    """Every message up to and including the first of type ``kind``."""
    seen = []
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        seen.append(message)
        if message["type"] == kind:
            return seen


async def texts_until_replayed(communicator: WebsocketCommunicator) -> list[str]:
    messages = await until(communicator, "replayed")
    assert messages[0]["type"] == "hello"
    return [row[6] for m in messages if m["type"] == "lines" for row in m["lines"]]


async def next_lines(communicator: WebsocketCommunicator, timeout: float = 10) -> dict[str, Any]:
    """The next "lines" message (acknowledged, like the page does)."""
    message = (await until(communicator, "lines", timeout))[-1]
    await communicator.send_json_to({"type": "ack", "batch": message["batch"]})
    return message
