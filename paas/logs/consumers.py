"""Live logs over WebSockets: a build's log, and an app's runtime log.

The app log protocol (JSON text frames)::

    server -> {"type": "hello", "fields": [...], "filter": {...}, "resumed": bool}
              {"type": "lines", "batch": N, "lines": [[seq, time, source,
                                 process, instance, stream, text], ...]}
              {"type": "replayed", "count": N, "upto": SEQ}
                                 history done, live from here; every matching
                                 line up to SEQ was sent (or counted dropped)
              {"type": "dropped", "count": N}      N lines were skipped here
              {"type": "error", "message": ...}
    client -> {"type": "ack", "batch": N}          after showing batch N
              {"type": "filter", "process", "instance", "source", "q"}

Resuming: a page whose socket dropped reconnects with ``?since=SEQ``, the
highest sequence number it had (or the last ``upto``); it then gets every
matching line after it (the newest ``PAAS_LOG_CONSUMER_BUFFER``, the rest
counted as dropped) instead of the recent history, and keeps what it shows
(``resumed``).

Gaps: Redis pub/sub delivers a batch to whoever listens at that moment, so
batches published while Redis restarts, or while this process's connection
to it is re-made, are lost for the live view (never for the database). Each
batch carries its first and last sequence number; a batch that does not
follow the last one seen makes the consumer read the missing lines from the
database first. So a watcher sees every line once, in spite of a Redis
restart, a publisher that lost its connection, or two publishers whose
batches cross.

Flow control is by acknowledgement: at most ``MAX_UNACKED`` batches are on
the way to a client; what arrives meanwhile waits in a buffer of at most
``PAAS_LOG_CONSUMER_BUFFER`` lines, and beyond that the oldest waiting lines
are dropped and counted. So a slow browser costs a bounded amount of
memory, and it never slows the follower, the agents or other watchers: the
live batches reach every consumer through Redis pub/sub without waiting for
any of them. And when the web process itself falls behind (more watchers
than it has CPU for), a batch that waited longer than ``MAX_LAG_S`` for its
consumer's turn is skipped and counted the same way, so the backlog drains.
(channels_redis' pub/sub layer gives each consumer an unbounded queue of its
own; it stays short because no handler here waits for the client: a batch
is queued in the bounded buffer or dropped, never sent while a slow socket
holds it up.)
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from paas.accounts.services import role_in_team
from paas.applications.selectors import app_for_user
from paas.builds.models import FINAL_STATES
from paas.builds.selectors import build_for_user, build_log_since
from paas.builds.services import build_group, build_state_event
from paas.core.errors import PaasError, ValidationFailed
from paas.logs.filters import LogFilter
from paas.logs.lines import FIELDS, encode_rows
from paas.logs.selectors import logs_after
from paas.logs.services import LAYER, app_logs_group

# Close codes in the application range (4000-4999), mirroring HTTP statuses.
CLOSE_BAD_REQUEST = 4400
CLOSE_FORBIDDEN = 4403
MAX_UNACKED = 4  # batches on the way to one client before lines wait in its buffer
MAX_FRAME_LINES = 2000  # lines per frame when a backlog is sent
MAX_LAG_S = 2.0  # a batch older than this when its turn comes is dropped (and counted)
MEMBERSHIP_RECHECK_S = 15.0  # a watcher removed from the team is cut off within this


def _cursor(text: str) -> int | None:
    """A ``since`` cursor: a sequence number, or absent."""
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ValidationFailed("since must be a line's sequence number", field="since")
    return int(text)


class BuildLogConsumer(AsyncJsonWebsocketConsumer):
    group = ""
    last_seq = 0
    ended = False  # a final state was sent

    async def connect(self) -> None:
        build_id = self.scope["url_route"]["kwargs"]["build_id"]
        try:
            await database_sync_to_async(self._snapshot)(build_id)
        except PaasError:
            # Refuse the handshake: outsiders learn nothing about the build.
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = build_group(build_id)
        # Join before reading what to replay, lines and state alike: what
        # changes in between arrives twice at worst (a line is dropped below
        # by its sequence number, a state older than a final one is ignored),
        # never not at all. (The state read before joining could miss the
        # final one, and the page would wait for it forever.)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        lines = await database_sync_to_async(build_log_since)(build_id, 0)
        for seq, text in lines:
            await self._send_line(seq, text)
        await self._send_state(await database_sync_to_async(self._snapshot)(build_id))

    def _snapshot(self, build_id: str) -> dict[str, Any]:
        return build_state_event(build_for_user(user=self.scope["user"], build_id=build_id))

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The stream is one-way; ignore whatever a client sends.
        return

    async def build_line(self, event: dict[str, Any]) -> None:
        await self._send_line(event["seq"], event["text"])

    async def build_state(self, event: dict[str, Any]) -> None:
        await self._send_state(event)

    async def _send_state(self, event: dict[str, Any]) -> None:
        if self.ended:
            return
        self.ended = event["state"] in FINAL_STATES
        await self.send_json(
            {"type": "state", "state": event["state"], "error": event["error"],
             "image": event["image"]}
        )  # fmt: skip

    async def _send_line(self, seq: int, text: str) -> None:
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        await self.send_json({"type": "line", "seq": seq, "text": text})


class AppLogConsumer(AsyncJsonWebsocketConsumer):
    """An app's runtime log: recent history, then live lines (see the module doc)."""

    channel_layer_alias = LAYER

    async def connect(self) -> None:
        self.group = ""
        self.filter = LogFilter()
        # Every matching line up to this sequence number has been queued for
        # the client or counted as dropped: live lines at or below it are old.
        self.covered = 0
        self.sent = 0  # batches sent
        self.acked = 0
        self.waiting: deque[tuple[int, str]] = deque()  # (line count, JSON array of rows)
        self.waiting_lines = 0
        self.dropped = 0
        name = self.scope["url_route"]["kwargs"]["name"]
        try:
            query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
            self.filter = LogFilter.parse({k: v[-1] for k, v in query.items()})
            since = _cursor(query.get("since", [""])[-1])
            app = await database_sync_to_async(app_for_user)(user=self.scope["user"], name=name)
        except PaasError as exc:
            # Refuse the handshake: outsiders learn nothing about the app.
            await self.close(
                code=CLOSE_FORBIDDEN if exc.status in (403, 404) else CLOSE_BAD_REQUEST
            )
            return
        self.app_id, self.team_id = app.pk, app.team_id
        self.checked_at = time.monotonic()
        self.group = app_logs_group(app.pk)
        # Join before replaying: a line stored in between comes both ways and
        # is dropped by its sequence number, none is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._replay(since=since)

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ack" and isinstance(content.get("batch"), int):
            self.acked = max(self.acked, min(content["batch"], self.sent))
            await self._flush()
        elif kind == "filter":
            try:
                self.filter = LogFilter.parse(content)
            except PaasError as exc:
                await self.send_json({"type": "error", "message": exc.message})
                return
            self.waiting.clear()
            self.waiting_lines = self.dropped = 0
            await self._replay()
        else:
            await self.send_json({"type": "error", "message": "send an ack or a filter message"})

    async def _replay(self, *, since: int | None = None) -> None:
        """Recent history, or with ``since`` every line after it (see the module doc)."""
        read = database_sync_to_async(logs_after)
        resumed = since is not None
        if since is not None:
            limit = settings.PAAS_LOG_CONSUMER_BUFFER
            gap = await read(app_id=self.app_id, flt=self.filter, after=since, limit=limit)
            # A cursor past the app's last line is not this log's (an app
            # deleted and made again under its name): start afresh.
            resumed = since <= gap.upto
        if not resumed:
            limit = settings.PAAS_LOG_REPLAY_LINES
            gap = await read(
                app_id=self.app_id, flt=self.filter, after=0, limit=limit, count_skipped=False
            )  # history: older lines are not "dropped"
        rows = gap.rows
        if resumed:
            self.dropped += gap.skipped
        else:
            rows.sort(key=lambda r: (r[1], r[0]))  # history in time order
        await self.send_json(
            {"type": "hello", "fields": list(FIELDS), "filter": self.filter.as_dict(),
             "resumed": resumed}
        )  # fmt: skip
        self.covered = gap.upto
        if rows:
            self._wait(len(rows), encode_rows(rows))
        await self._flush()
        await self.send_json({"type": "replayed", "count": len(rows), "upto": self.covered})

    async def logs_batch(self, event: dict[str, Any]) -> None:
        first, last = event["first"], event["last"]
        if last <= self.covered or not await self._still_allowed():
            return
        if time.time() - event.get("sent_at", time.time()) > MAX_LAG_S:
            # This process is behind on its watchers (more than it can send):
            # skipping costs nothing, so the backlog drains instead of growing.
            self.dropped += last - max(first, self.covered + 1) + 1
            self.covered = last
            return
        if first > self.covered + 1:
            await self._fill(upto=first - 1)
        if self.filter.is_empty and first > self.covered:
            # The common case: forward the encoded rows as they came.
            self._wait(last - first + 1, event["rows"])
        else:
            rows = [
                r for r in json.loads(event["rows"])
                if r[0] > self.covered and self.filter.matches(r)
            ]  # fmt: skip
            if rows:
                self._wait(len(rows), encode_rows(rows))
        self.covered = last
        await self._flush()

    async def _fill(self, *, upto: int) -> None:
        """Queue the lines between the last batch seen and this one from the
        database: their batch never came (see "Gaps" in the module doc)."""
        gap = await database_sync_to_async(logs_after)(
            app_id=self.app_id, flt=self.filter, after=self.covered, upto=upto,
            limit=settings.PAAS_LOG_CONSUMER_BUFFER,
        )  # fmt: skip
        self.dropped += gap.skipped
        if gap.rows:
            self._wait(len(gap.rows), encode_rows(gap.rows))
        self.covered = upto

    async def _still_allowed(self) -> bool:
        """Membership is checked again now and then: a watcher removed from the
        team (or whose account went) stops receiving and is disconnected."""
        if time.monotonic() - self.checked_at < MEMBERSHIP_RECHECK_S:
            return True
        self.checked_at = time.monotonic()
        role = await database_sync_to_async(role_in_team)(
            user=self.scope["user"], team_id=self.team_id
        )
        if role is None:
            await self.disconnect(CLOSE_FORBIDDEN)
            self.group = ""
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        return True

    def _wait(self, count: int, rows_json: str) -> None:
        """Queue for sending; past the buffer's size the oldest lines go."""
        self.waiting.append((count, rows_json))
        self.waiting_lines += count
        limit = settings.PAAS_LOG_CONSUMER_BUFFER
        while self.waiting_lines > limit and len(self.waiting) > 1:
            dropped, _ = self.waiting.popleft()
            self.waiting_lines -= dropped
            self.dropped += dropped
        if self.waiting_lines > limit:  # one chunk larger than the buffer: keep its newest lines
            count, rows_json = self.waiting.popleft()
            kept = json.loads(rows_json)[-limit:]
            self.waiting.append((len(kept), encode_rows(kept)))
            self.waiting_lines = len(kept)
            self.dropped += count - len(kept)

    async def _flush(self) -> None:
        while self.waiting and self.sent - self.acked < MAX_UNACKED:
            if self.dropped:
                await self.send_json({"type": "dropped", "count": self.dropped})
                self.dropped = 0
            parts: list[str] = []
            count = 0
            while self.waiting and (not parts or count + self.waiting[0][0] <= MAX_FRAME_LINES):
                n, rows_json = self.waiting.popleft()
                parts.append(rows_json[1:-1])
                count += n
            self.waiting_lines -= count
            self.sent += 1
            await self.send(
                text_data=f'{{"type":"lines","batch":{self.sent},"lines":[{",".join(parts)}]}}'
            )
