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
from collections.abc import Iterator

from paas.logs.selectors import logs_page
from paas.logs.sse import BATCH, HEARTBEAT, RETRY, LiveFollow, sse_end, sse_line

POLL_S = 0.5


def log_events(follow: LiveFollow, *, poll_s: float = POLL_S) -> Iterator[bytes]:
    """The event stream's bytes (blocking: for the request's own thread).
    (``follow.still_allowed`` is not asked again: a follow here lasts one
    request of a test or development server.)"""
    clock = follow.clock
    started = last_sent = clock()
    limit = BATCH if follow.since is not None else follow.history
    page = logs_page(app_id=follow.app_id, flt=follow.flt, limit=limit, since=follow.since)
    yield RETRY
    sent = 0
    while True:
        for row in page.rows:
            chunk = sse_line(row)
            sent += len(chunk)
            yield chunk
            if sent >= follow.max_bytes:  # the rest after the client reconnects
                yield sse_end(row[0], "max_bytes")
                return
        if page.rows:
            last_sent = clock()
        elif clock() - last_sent >= follow.heartbeat_s:
            yield HEARTBEAT
            last_sent = clock()
        if clock() - started >= follow.max_s:
            yield sse_end(page.next)
            return
        if len(page.rows) < BATCH:
            time.sleep(poll_s)
        page = logs_page(app_id=follow.app_id, flt=follow.flt, limit=BATCH, since=page.next)
