"""Following an app's log over the REST API under ASGI (daphne): server-sent
events pushed as lines are stored, with no thread and no polling per follower.

Lines reach it the way they reach the browsers: the batches
:func:`paas.logs.services.logs_publish` sends to the app's Redis pub/sub group
once they are committed. The follower joins that group on a channel of its
own *before* it reads the database, so a line stored in between comes both
ways and is dropped by its sequence number, and none is missed.

The database stays the truth. Every event's ``id`` is the line's sequence
number and the stream keeps ``covered``, the number up to which every
matching line was sent: a batch that does not follow it (its predecessor was
lost while Redis restarted, or two publishers crossed) makes the stream read
the missing lines from the database first, and so does every quiet
heartbeat (a publication lost for good costs at most one heartbeat of
delay). A client that reconnects with ``Last-Event-ID`` (or ``?since=``)
thus gets every matching line after the last one it had, once.

Bounds: a comment line every ``heartbeat_s`` while nothing else is sent (so
a proxy does not cut an idle stream), an ``end`` event after ``max_s`` (the
client reconnects with its cursor) or once ``max_bytes`` were sent (daphne
does not slow a stream down for a client that reads slowly: it keeps in
memory whatever the client has not read, so a stream is bounded in bytes
as well as in time), membership checked again every
``MEMBERSHIP_RECHECK_S`` with the token (a user removed from the team, or
whose token was revoked, gets an ``end`` event with ``"reason": "forbidden"``
and no further line). When the client leaves,
Django's ASGI handler cancels the response; the ``finally`` below (which runs
too when the stream ends on its own) cancels the pending receive, leaves the
group and unsubscribes the channel, so nothing stays subscribed or running.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from channels.db import DatabaseSyncToAsync
from channels.layers import get_channel_layer

from paas.logs.models import LogCounter
from paas.logs.selectors import logs_page
from paas.logs.services import LAYER, app_logs_group
from paas.logs.sse import BATCH, HEARTBEAT, RETRY, LiveFollow, sse_end, sse_line

log = logging.getLogger(__name__)

MEMBERSHIP_RECHECK_S = 15.0
REVOKED = "Your access to this app's log was revoked (the API token, or the team membership)."


async def live_log_events(follow: LiveFollow) -> AsyncIterator[bytes]:
    """The event stream's bytes, for a ``StreamingHttpResponse`` under ASGI."""
    layer = get_channel_layer(LAYER)
    group = app_logs_group(follow.app_id)
    channel = await layer.new_channel(prefix="logstream.")
    receiving: asyncio.Future[Any] | None = None
    try:
        await layer.group_add(group, channel)
        stream = _Cursor(follow)
        yield RETRY
        async for chunk in stream.start():
            yield chunk
        started = checked = last_sent = follow.clock()
        while True:
            now = follow.clock()
            if stream.spent:
                yield sse_end(stream.covered, "max_bytes")
                return
            if now - started >= follow.max_s:
                yield sse_end(stream.covered)
                return
            if now - checked >= MEMBERSHIP_RECHECK_S:
                checked = now
                if not await _in_pool(follow.still_allowed)():
                    yield sse_end(stream.covered, "forbidden", REVOKED)
                    return
            if receiving is None:
                receiving = asyncio.ensure_future(layer.receive(channel))
            wait_s = min(last_sent + follow.heartbeat_s, started + follow.max_s) - now
            done, _ = await asyncio.wait({receiving}, timeout=max(wait_s, 0.0))
            if done:
                message, receiving = receiving.result(), None
                chunks = stream.batch(message)
            else:  # quiet: catch up on anything a lost publication hid
                chunks = stream.catch_up(upto=None)
            async for chunk in chunks:
                last_sent = follow.clock()
                yield chunk
            # Batches whose lines the filter drops send nothing either.
            if follow.clock() - last_sent >= follow.heartbeat_s:
                last_sent = follow.clock()
                yield HEARTBEAT
    finally:
        # Also runs when the client left (the handler cancelled us).
        if receiving is not None:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
        try:
            await layer.group_discard(group, channel)
        except Exception:  # Redis away: its subscriptions went with the connection
            log.warning("could not leave %s", group, exc_info=True)
        await _close_channel(layer, channel)


async def _close_channel(layer: Any, channel: str) -> None:
    """Unsubscribe ``channel``. channels_redis has no call for it: its
    pub/sub layer unsubscribes a channel when a ``receive`` on it is
    cancelled (how a consumer's end looks to it), so wait on it and cancel.
    A ``receive`` that finds a message waiting returns it instead; take it
    (the group was left: no new one comes) and try again."""
    while True:
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)  # let it reach its wait
        if receiving.done():
            receiving.exception()  # (retrieved, so never logged as lost)
            continue
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
        return


class _Cursor:
    """Where a follower is in the app's log, and how it gets further."""

    def __init__(self, follow: LiveFollow) -> None:
        self.follow = follow
        self.covered = 0  # every matching line up to here was sent
        self.sent = 0  # bytes of lines sent

    @property
    def spent(self) -> bool:
        """The stream sent its ``max_bytes``: it ends at the next turn."""
        return self.sent >= self.follow.max_bytes

    def _line(self, row: list[Any]) -> bytes:
        chunk = sse_line(row)
        self.sent += len(chunk)
        return chunk

    async def start(self) -> AsyncIterator[bytes]:
        """Lines after ``since``; without it, the last ``history`` lines."""
        f = self.follow
        newest = await _last_seq(f.app_id)
        if f.since is not None:
            # A cursor past the newest line is not this log's (the app was
            # deleted and made again under its name): go on from its end.
            self.covered = min(f.since, newest)
            async for chunk in self.catch_up(upto=newest):
                yield chunk
            return
        page = await _page(app_id=f.app_id, flt=f.flt, limit=f.history)
        for row in page.rows:
            if row[0] <= newest:  # later ones come by their batch
                yield self._line(row)
                if self.spent:
                    self.covered = row[0]
                    return
        self.covered = newest

    async def batch(self, message: dict[str, Any]) -> AsyncIterator[bytes]:
        first, last = int(message["first"]), int(message["last"])
        if last <= self.covered:
            return
        if first > self.covered + 1:  # its predecessor never came: the database has it
            async for chunk in self.catch_up(upto=last):
                yield chunk
            return
        rows = [r for r in json.loads(message["rows"]) if r[0] > self.covered]
        for row in rows:
            if self.follow.flt.matches(row):
                yield self._line(row)
                if self.spent:  # the rest after the client reconnects
                    self.covered = row[0]
                    return
        self.covered = last

    async def catch_up(self, *, upto: int | None) -> AsyncIterator[bytes]:
        """Matching lines after ``covered`` and up to ``upto`` (None: the newest
        committed) from the database, a page at a time."""
        if upto is None:
            upto = await _last_seq(self.follow.app_id)
        while self.covered < upto:
            page = await _page(
                app_id=self.follow.app_id, flt=self.follow.flt, limit=BATCH, since=self.covered
            )
            rows = [r for r in page.rows if r[0] <= upto]
            for row in rows:
                yield self._line(row)
                if self.spent:  # the rest after the client reconnects
                    self.covered = row[0]
                    return
            if len(page.rows) < BATCH or len(rows) < len(page.rows):
                break  # every matching line up to ``upto`` was read
            self.covered = rows[-1][0]
        self.covered = max(self.covered, upto)


def _in_pool(fn: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A database read on the event loop's shared pool of threads: never on a
    thread of the request's own (paas/api/log_stream_asgi.py says why)."""
    return DatabaseSyncToAsync(fn, thread_sensitive=False)


def _newest_seq(app_id: int) -> int:
    """Every line up to this number is committed (see ``logs_after``)."""
    found = LogCounter.objects.filter(app_id=app_id).values_list("last_seq", flat=True)
    return found.first() or 0


_last_seq = DatabaseSyncToAsync(_newest_seq, thread_sensitive=False)
_page = DatabaseSyncToAsync(logs_page, thread_sensitive=False)
