"""`paas logs -f`: follow an app's log as the platform pushes it.

The platform streams server-sent events (``GET /api/v1/apps/APP/logs/stream``):
each ``line`` event carries the line and its id, comments are heartbeats, and
an ``end`` event closes a stream that has lasted its maximum. The cursor is
the id of the last line shown (or an ``end`` event's ``next``); after an
``end``, a dropped connection, a server restart or a silence longer than
``READ_TIMEOUT_S`` (the server sends a heartbeat every 15 s), the follow
reconnects with ``since=<cursor>`` and goes on: no line is lost or shown
twice. Refusals (a revoked token, an app that is gone) end it with the
platform's message.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any, Callable

from paas_cli.client import Api
from paas_cli.errors import CliError, StreamDropped
from paas_cli.output import Output

READ_TIMEOUT_S = 60.0  # four heartbeats missed: the connection is dead
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # then every 8 s until the platform is back

Event = tuple[str, Any]


def follow_log(
    api: Api, out: Output, *, app: str, ps: str | None, lines: int,
    show: Callable[[dict], None], sleep: Callable[[float], None] = time.sleep,
) -> int:  # fmt: skip
    """Show lines as they come, for ever (until interrupted or refused)."""
    cursor: int | None = None
    failures = 0
    while True:
        query: dict = {"ps": ps}
        if cursor is None:
            query["limit"] = lines
        else:
            query["since"] = cursor
        try:
            response = api.open_stream(f"apps/{app}/logs/stream", query, {}, timeout=READ_TIMEOUT_S)
            if failures:
                out.note("paas: reconnected; going on from the last line shown.")
            failures = 0
            with response:
                for kind, data in _events(response):
                    if kind == "line":
                        show(data)
                        cursor = int(data["id"])
                    elif kind == "end":
                        cursor = _after_end(data, cursor)
                        break
            continue  # an end (or a clean close): reconnect at once
        except StreamDropped as exc:
            reason = str(exc)
        if failures == 0:
            out.note(f"paas: log stream lost ({reason}); reconnecting...")
        sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
        failures += 1


def _after_end(data: Any, cursor: int | None) -> int | None:
    if not isinstance(data, dict):
        return cursor
    if data.get("reason") == "forbidden":
        raise CliError(str(data.get("message") or "You no longer have access to this app's log."))
    following = data.get("next")
    return following if isinstance(following, int) else cursor


def _events(response: http.client.HTTPResponse) -> Iterator[Event]:
    """(event, data) of each event; comments (heartbeats) only keep it alive."""
    fields: dict = {}
    while True:
        try:
            raw = response.readline()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise StreamDropped(f"the connection broke: {exc}") from None
        if not raw:
            return  # the server closed the stream without an end event
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line:
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
            continue
        if "event" in fields:
            try:
                yield fields["event"], json.loads(fields.get("data", "null"))
            except ValueError:
                raise StreamDropped("the platform sent an event that is not JSON") from None
        fields = {}
