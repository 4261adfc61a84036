"""Following an app's log as server-sent events under a WSGI server (the
test server, ``runserver``), where the request owns a thread anyway: it
polls the database. Under daphne the stream is paas/logs/live_stream.py
(pushed from Redis pub/sub, no thread per follower); both send the same
events.

It reads the stored log, which every line reaches (Redis pub/sub is only
the browsers' fast path), from a cursor: first the last lines (or those
after ``since`` / ``Last-Event-ID``), then new ones as they are stored.
Each event's ``id`` is the line's sequence number, so a client that
reconnects with ``Last-Event-ID`` misses nothing and sees nothing twice. A
follow ends after ``max_s`` (or ``max_bytes`` of lines) with an ``end``
event (the client reconnects): no request holds a worker thread for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from paas.logs.filters import LogFilter
from paas.logs.live_stream import sse_end, sse_line
from paas.logs.selectors import logs_page

POLL_S = 0.5
BATCH = 500


def log_events(
    *, app_id: int, flt: LogFilter, since: int | None, history: int, max_s: float,
    heartbeat_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic,
    poll_s: float = POLL_S,
) -> Iterator[bytes]:  # fmt: skip
    """The event stream's bytes (blocking: for the request's own thread)."""
    started = last_sent = clock()
    page = logs_page(app_id=app_id, flt=flt, limit=BATCH if since is not None else history,
                     since=since)  # fmt: skip
    yield b"retry: 1000\n\n"
    sent = 0
    while True:
        for row in page.rows:
            chunk = sse_line(row)
            sent += len(chunk)
            yield chunk
            if sent >= max_bytes:  # the rest after the client reconnects
                yield sse_end(row[0], "max_bytes")
                return
        if page.rows:
            last_sent = clock()
        elif clock() - last_sent >= heartbeat_s:
            yield b": heartbeat\n\n"
            last_sent = clock()
        if clock() - started >= max_s:
            yield sse_end(page.next)
            return
        if len(page.rows) < BATCH:
            time.sleep(poll_s)
        page = logs_page(app_id=app_id, flt=flt, limit=BATCH, since=page.next)
