"""What the two follows of an app's log over the REST API share: what a
follower asked for, and the server-sent events both send. Under daphne the
stream is paas/logs/live_stream.py (pushed from Redis pub/sub), under a
WSGI server paas/logs/poll_stream.py (polls the database); a client
cannot tell them apart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paas.logs.filters import LogFilter

BATCH = 500  # lines per database read
# A row's fields (paas.logs.lines.FIELDS) as the API names them.
LINE_FIELDS = ("id", "time", "source", "process_type", "instance", "stream", "text")
RETRY = b"retry: 1000\n\n"
# A comment line, sent while nothing else is, so a proxy does not cut an idle stream.
HEARTBEAT = b": heartbeat\n\n"


@dataclass
class LiveFollow:
    """What one follower asked for (checked by the view before streaming)."""

    app_id: int
    user_id: int
    # Asked again every live_stream.MEMBERSHIP_RECHECK_S (in a thread: it
    # reads the database): is the client still allowed to read this log?
    still_allowed: Callable[[], bool]
    flt: LogFilter
    since: int | None
    history: int
    max_s: float
    heartbeat_s: float
    max_bytes: int
    clock: Callable[[], float] = time.monotonic


def line_of(row: list[Any]) -> dict[str, Any]:
    """A stored row as the API shows a line."""
    return dict(zip(LINE_FIELDS, row, strict=True))


def sse_line(row: list[Any]) -> bytes:
    line = line_of(row)
    return f"id: {line['id']}\nevent: line\ndata: {json.dumps(line)}\n\n".encode()


def sse_end(next_id: int, reason: str = "max_duration", message: str = "") -> bytes:
    data: dict[str, Any] = {"next": next_id, "reason": reason}
    if message:
        data["message"] = message
    return f"event: end\ndata: {json.dumps(data)}\n\n".encode()
