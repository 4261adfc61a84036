"""The log follower: one long-lived process (``manage.py logs_follow``) that
reads every running container's log from its agent and the router's access
log, stores the lines and publishes them to the apps' watchers.

Why follow the agents' HTTP API rather than let agents write to Redis: an
agent holds only its own bearer token, never the broker's credentials (a
compromised host cannot read or forge other hosts' traffic), and the agent's
log files are the buffer: when the follower is down or slow, lines wait on
disk and are read later.

Exactly once across restarts: each source has a cursor (:class:`LogCursor`)
stored in the same transaction as its lines. For a container the cursor is
the agent's timestamp of the last stored line and how many stored lines carry
that very timestamp (the agent stamps a whole read batch with one time); on
reconnect the follower asks for lines since a second before it, skips what
is older and the first ``count`` lines of that timestamp. The agent also
numbers each container's lines (``n``); the cursor keeps the last number, so
lines already stored are skipped by it, and a jump in the numbers (the
agent's size-capped log rotated lines away before they were read: the
follower was down or far behind) is stored as a ``platform`` line "N lines of
web.1 were lost ..." where they were: visible in the log, never silent. For
the router's access log it is the file's inode and byte offset.

One writer: every source feeds the writer's queue; a single task stores what
has piled up while the previous store ran (natural batching: small batches
when idle, large ones under load), in one database thread. The queue is fair
(:class:`FairQueue`): each source has a few chunks of room of its own and the
writer takes one chunk of each waiting app in turn (of its sources in turn),
so a chatty app that keeps the follower busy, with one instance or fifty,
does not put its backlog in front of a quiet app's lines (they go into the
next store); the chatty source just waits for room, and its agent keeps its
lines meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from django.db import connection

from paas.applications.models import App
from paas.logs.lines import IngestLine
from paas.logs.models import LogSource
from paas.logs.router_lines import router_line
from paas.logs.selectors import FollowTarget, containers_to_follow
from paas.logs.services import (
    StoredBatch,
    log_cursor_position,
    logs_publish_async,
    logs_store,
)
from runtime_agent import wire
from runtime_agent.host.tls import fingerprint_bytes, mismatch, parse_fingerprint

log = logging.getLogger(__name__)

SOURCE_CHUNKS = 8  # chunks of one source waiting for the writer; then it waits (agents buffer)
ROUTER_READ = 1024 * 1024
ROUTER_POLL_S = 0.1
MAX_BACKOFF_S = 10.0
GONE_BACKOFF_S = 2.0  # a pending instance's container appears within moments
# Lines stored (and published) at once at most: bigger batches store a little
# faster but reach the browsers later and in lumps, and a quiet app's line
# that comes during a store waits for it, then for its own (2000 lines took
# 70-340 ms on a busy host; with 50 containers and a flood, batches of ~600
# lines (500 + a chunk) made a quiet line wait p50 24-37 / p99 93-556 ms from
# receipt to stored, ~300 lines 11 / 51 ms, for about the same flood rate).
WRITE_BATCH_LINES = 250
# Lines of one source per queued chunk at most (an agent sends up to 2000 at
# once): a quiet source's lines then wait for one small store at most, not for
# a chatty source's whole read. Each chunk carries the position after its
# last line, so a crash between two stores loses or repeats nothing.
CHUNK_LINES = 125
SETTLE_POLL_S = 0.05
TURN_S = 0.01  # a chatty stream's parsing holds the event loop about this long at most


@dataclass
class Item:
    """Lines of one app on their way to the database, and where their source
    will be after them (router lines name their app instead of its id)."""

    app_id: int | None
    app_name: str
    lines: list[IngestLine]
    cursor_key: str
    position: dict[str, Any]


class FairQueue:
    """Chunks of lines from many sources for the one writer: each source has
    ``per_source`` chunks of room (then :meth:`put` waits), and :meth:`take`
    serves the apps in turn, one chunk of one of the app's waiting sources
    per turn (see the module doc).

    Turns go to apps, not sources: with a turn per source, an app's one
    quiet instance waited behind one chunk of every instance of a busy app
    (50 instances of which one floods: ~10 stores, p90 ~200 ms, measured);
    per app it waits for one chunk of the busy app at most. Router lines
    (a chunk names several apps) are a lane of their own."""

    def __init__(self, per_source: int) -> None:
        self.per_source = per_source
        self.waiting: dict[str, deque[list[Item]]] = {}  # source -> its chunks, oldest first
        self.lanes: dict[str, deque[str]] = {}  # app -> its sources with chunks, next first
        self.turns: deque[str] = deque()  # apps with chunks waiting, next first
        self.ready = asyncio.Event()
        self.room: dict[str, asyncio.Event] = {}

    async def put(self, source: str, items: list[Item]) -> None:
        chunks = self.waiting.setdefault(source, deque())
        while len(chunks) >= self.per_source:
            room = self.room.setdefault(source, asyncio.Event())
            room.clear()
            await room.wait()
            chunks = self.waiting.setdefault(source, deque())
        if not chunks:
            lane = _lane(source, items)
            if lane not in self.lanes:
                self.lanes[lane] = deque()
                self.turns.append(lane)
            self.lanes[lane].append(source)
        chunks.append(items)
        self.ready.set()

    def holds(self, source: str) -> bool:
        return source in self.waiting

    async def take(self, max_lines: int) -> list[Item]:
        """At least one chunk; more, in turns, while under ``max_lines``."""
        while not self.turns:
            self.ready.clear()
            await self.ready.wait()
        items: list[Item] = []
        count = 0
        while self.turns and (not items or count < max_lines):
            lane = self.turns.popleft()
            sources = self.lanes[lane]
            source = sources.popleft()
            chunks = self.waiting[source]
            chunk = chunks.popleft()
            items.extend(chunk)
            count += sum(len(i.lines) for i in chunk)
            if chunks:
                sources.append(source)
            else:
                del self.waiting[source]
            if sources:
                self.turns.append(lane)
            else:
                del self.lanes[lane]
            if source in self.room:
                self.room[source].set()
        return items


def _lane(source: str, items: list[Item]) -> str:
    """The app whose turn a source's chunks take (a container's lines are
    all its app's; the router's name their apps, and keep their own lane)."""
    app_id = items[0].app_id if items else None
    return f"app {app_id}" if app_id is not None else source


class AgentStreamError(Exception):
    pass


class ContainerGone(AgentStreamError):
    pass


@dataclass
class ContainerPosition:
    """The last line accepted from a container: its time, how many lines had
    it, and its number (None: unknown, a cursor from before numbering)."""

    time: str = ""
    count: int = 0
    n: int | None = 0
    skip: int = field(default=0, repr=False)  # lines of ``time`` still to skip after a reconnect
    lost: int = field(default=0, repr=False)  # lines the last accepted one's number skipped

    @classmethod
    def load(cls, data: dict[str, Any]) -> ContainerPosition:
        time, count, n = data.get("time"), data.get("count"), data.get("n")
        if isinstance(time, str) and isinstance(count, int):
            return cls(time, count, n if isinstance(n, int) else None)
        return cls()

    def saved(self) -> dict[str, Any]:
        return {"time": self.time, "count": self.count, "n": self.n}

    def rewind(self) -> None:
        self.skip = self.count

    def accept(self, time: str, n: int = 0) -> bool:
        """Whether a line stamped ``time`` (numbered ``n``, 0 if not) is new,
        counting it if so; ``lost`` says how many lines were skipped before it."""
        self.lost = 0
        if n and self.n is not None:
            if n <= self.n and time <= self.time:
                return False  # stored already
            # (A smaller number at a later time: the container's log began anew.)
            self.lost = max(n - self.n - 1, 0)
            self.n = n
            self.time, self.count = time, (self.count + 1 if time == self.time else 1)
            self.skip = 0
            return True
        accepted = self._accept_by_time(time)
        if accepted and n:
            self.n = n
        return accepted

    def _accept_by_time(self, time: str) -> bool:
        if time < self.time:
            return False
        if time == self.time:
            if self.skip > 0:
                self.skip -= 1
                return False
            self.count += 1
            return True
        self.time, self.count, self.skip = time, 1, 0
        return True

    def since(self) -> str | None:
        """Unix seconds a second before ``time``: the agent's filter may round."""
        if not self.time:
            return None
        return f"{datetime.fromisoformat(self.time).timestamp() - 1:.6f}"


def _pinned(target: FollowTarget) -> aiohttp.Fingerprint:
    """What aiohttp checks the agent's certificate against, right after the
    handshake and before the request (and its credential) goes out. aiohttp
    checks no fingerprint over plain HTTP, so anything but https is refused."""
    if not target.host_url.startswith("https://"):
        raise AgentStreamError(f"not following over {target.host_url}: agents serve https only")
    if not target.fingerprint:
        raise AgentStreamError(f"no certificate is pinned for {target.host_url}: re-join it")
    return aiohttp.Fingerprint(fingerprint_bytes(target.fingerprint))


def _mismatch(target: FollowTarget, exc: aiohttp.ServerFingerprintMismatch) -> str:
    presented = parse_fingerprint(exc.got.hex())
    return mismatch(target.host_url, presented, parse_fingerprint(target.fingerprint)).message


def _lost_notice(target: FollowTarget, count: int, moment: datetime) -> IngestLine:
    text = (
        f"{count} line{'s' if count != 1 else ''} of {target.instance or target.container_name}"
        " were lost here: the agent's log rotated them away before they were read"
        " (PAAS_AGENT_LOG_MAX_BYTES x PAAS_AGENT_LOG_MAX_FILES per container)"
    )
    return IngestLine(LogSource.PLATFORM, moment, text, "", target.process_type[:30],
                      target.instance[:63], target.container_name[:63])  # fmt: skip


def _stream_name(value: Any) -> str:
    return value if value in ("stdout", "stderr") else ""


class Follower:
    def __init__(
        self, *, layer: Any, refresh_s: float = 2.0, router_log: Path | None = None
    ) -> None:
        self.layer = layer
        self.refresh_s = refresh_s
        self.router_log = router_log
        self.queue = FairQueue(SOURCE_CHUNKS)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.following: dict[str, FollowTarget] = {}
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logs-db")
        self.session: aiohttp.ClientSession | None = None
        self.stored_lines = 0
        self.storing: set[str] = set()  # sources of the lines being stored now
        self.publish_failing = False

    async def _in_db(self, fn: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            try:
                return fn(**kwargs)
            except Exception:
                connection.close()  # a broken connection is reopened on the next call
                raise

        return await asyncio.get_running_loop().run_in_executor(self.db, call)

    # --- the process ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        )
        helpers = [asyncio.create_task(self._write_loop(), name="logs-writer")]
        if self.router_log is not None:
            helpers.append(asyncio.create_task(self._router_loop(self.router_log)))
        try:
            while not stop.is_set():
                await self._refresh()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.refresh_s)
        finally:
            for task in [*self.tasks.values(), *helpers]:
                task.cancel()
            for task in [*self.tasks.values(), *helpers]:
                with contextlib.suppress(BaseException):
                    await task
            await self.session.close()
            self.db.shutdown(wait=True)

    async def _refresh(self) -> None:
        try:
            targets = await self._in_db(containers_to_follow)
        except Exception:
            log.exception("could not read the containers to follow")
            return
        wanted = {t.key: t for t in targets}
        for key in list(self.tasks):
            task = self.tasks[key]
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("following %s failed", key, exc_info=task.exception())
            # A host that joined again has a new credential and pin: follow anew.
            if key not in wanted or task.done() or wanted[key] != self.following.get(key):
                self.tasks.pop(key).cancel()
        for key, target in wanted.items():
            if key not in self.tasks:
                log.info("following %s (app %s, %s)", key, target.app_id, target.instance)
                self.following[key] = target
                self.tasks[key] = asyncio.create_task(self._follow(target), name=key)

    # --- containers ----------------------------------------------------------------

    async def _follow(self, target: FollowTarget) -> None:
        if not wire.NAME_RE.fullmatch(target.container_name):
            log.error("not following %r: not a container name", target.container_name)
            return
        await self.settled(target.key)
        saved = await self._in_db(log_cursor_position, key=target.key)
        position = ContainerPosition.load(saved)
        backoff = 0.2
        while True:
            position.rewind()
            try:
                got = await self._stream(target, position)
                backoff = 0.2 if got else min(backoff * 2, MAX_BACKOFF_S)
            except ContainerGone:  # not created yet, or removed: ask again, less and less often
                backoff = min(backoff * 2, GONE_BACKOFF_S)
            except aiohttp.ServerFingerprintMismatch as exc:
                log.error("following %s: %s", target.key, _mismatch(target, exc))
                backoff = MAX_BACKOFF_S
            except (AgentStreamError, aiohttp.ClientError, OSError, ValueError) as exc:
                log.warning("following %s: %s", target.key, exc)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            await asyncio.sleep(backoff)

    async def _stream(self, target: FollowTarget, position: ContainerPosition) -> int:
        """Read one follow stream to its end; returns how many new lines came."""
        assert self.session is not None
        params = {"follow": "1", "tail": "all"}
        since = position.since()
        if since is not None:
            params["since"] = since
        url = f"{target.host_url.rstrip('/')}/v1/containers/{target.container_name}/logs"
        headers = {"Authorization": f"Bearer {target.token}"}
        got = 0
        async with self.session.get(
            url, params=params, headers=headers, ssl=_pinned(target)
        ) as resp:
            if resp.status == 404:
                raise ContainerGone(target.container_name)
            if resp.status != 200:
                raise AgentStreamError(f"agent answered {resp.status}: {(await resp.text())[:200]}")
            rest = b""
            async for data in resp.content.iter_any():
                if b"\n" not in data:
                    rest += data
                    continue
                chunk, rest = (rest + data).rsplit(b"\n", 1)
                if not chunk:
                    continue
                raw = chunk.split(b"\n")
                busy_since = time.monotonic()
                for at in range(0, len(raw), CHUNK_LINES):
                    # One parse per CHUNK_LINES (NDJSON lines never hold a raw newline).
                    entries = json.loads(b"[" + b",".join(raw[at : at + CHUNK_LINES]) + b"]")
                    items = self._container_items(target, position, entries)
                    if items:
                        got += len(items[0].lines)
                        await self.queue.put(target.key, items)
                    # Let the other streams' reads and the writer go between two
                    # chunks of a chatty one now and then (put only waits when
                    # its room is full; a yield per chunk cost a flood half its rate).
                    if time.monotonic() - busy_since >= TURN_S:
                        await asyncio.sleep(0)
                        busy_since = time.monotonic()
        return got

    def _container_items(
        self, target: FollowTarget, position: ContainerPosition, entries: list[Any]
    ) -> list[Item]:
        """New lines of ``entries`` as one item that ends at ``position``."""
        lines = []
        parsed_time, moment = "", None
        process, instance = target.process_type[:30], target.instance[:63]
        container = target.container_name[:63]
        for data in entries:
            if "error" in data:
                raise AgentStreamError(f"agent: {data.get('message', data['error'])}")
            time, n = data["time"], data.get("n", 0)
            if not isinstance(time, str) or not position.accept(time, n if type(n) is int else 0):
                continue
            if time != parsed_time:  # the agent stamps a whole read with one time
                parsed_time, moment = time, datetime.fromisoformat(time)
            assert moment is not None
            if position.lost:
                lines.append(_lost_notice(target, position.lost, moment))
            lines.append(
                IngestLine(LogSource.APP, moment, str(data.get("line", "")),
                           _stream_name(data.get("stream")), process, instance, container)
            )  # fmt: skip
        if not lines:
            return []
        return [Item(target.app_id, "", lines, target.key, position.saved())]

    # --- the router ------------------------------------------------------------------

    async def _router_loop(self, path: Path) -> None:
        key = f"router:{path}"
        saved = await self._in_db(log_cursor_position, key=key)
        inode, offset = saved.get("inode"), int(saved.get("offset") or 0)
        while True:
            try:
                inode, offset, items = await asyncio.to_thread(
                    _read_router, path, key, inode, offset
                )
            except OSError as exc:  # e.g. unreadable: say so now and then, not ten times a second
                log.warning("reading %s: %s", path, exc)
                await asyncio.sleep(MAX_BACKOFF_S)
                continue
            if items:
                await self.queue.put(key, items)
            else:
                await asyncio.sleep(ROUTER_POLL_S)

    # --- storing ------------------------------------------------------------------------

    async def settled(self, key: str) -> None:
        """Until no line of source ``key`` waits to be stored. A source followed
        anew (its task ended, or its host joined again) reads its cursor only
        then: read earlier, it would miss what the old task still had queued,
        and those lines would be stored twice."""
        while self.queue.holds(key) or key in self.storing:
            await asyncio.sleep(SETTLE_POLL_S)

    async def _write_loop(self) -> None:
        while True:
            items = await self.queue.take(WRITE_BATCH_LINES)
            count = sum(len(i.lines) for i in items)
            self.storing = {i.cursor_key for i in items}
            backoff = 0.5
            while True:
                try:
                    batches = await self._in_db(store_items, items=items)
                    break
                except Exception:
                    log.exception("could not store %d log lines; retrying", count)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
            self.storing = set()
            self.stored_lines += count
            # Smallest first: a quiet app's few lines stored beside a chatty
            # app's hundreds need not wait for those to cross Redis (each
            # app has one batch per store, so no app's order changes).
            for batch in sorted(batches, key=lambda b: b.count):
                self._published(await logs_publish_async(self.layer, batch))

    def _published(self, failure: Exception | None) -> None:
        """Say when publishing starts failing (Redis down) and when it works again."""
        if failure is not None and not self.publish_failing:
            log.warning(
                "could not publish log lines to Redis (%s); they are stored, and watchers "
                "read the ones they missed from the database", failure
            )  # fmt: skip
        elif failure is None and self.publish_failing:
            log.warning("publishing log lines to Redis works again")
        self.publish_failing = failure is not None


def _read_router(
    path: Path, key: str, inode: Any, offset: int
) -> tuple[int | None, int, list[Item]]:
    """New complete lines of the access log after ``offset`` (from 0 if the
    file was replaced or truncated)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return inode, offset, []
    try:
        st = os.fstat(fd)
        if st.st_ino != inode or st.st_size < offset:
            inode, offset = st.st_ino, 0
        data = os.pread(fd, ROUTER_READ, offset)
    finally:
        os.close(fd)
    by_app: dict[str, list[IngestLine]] = defaultdict(list)
    for raw in data.split(b"\n")[:-1]:  # the last piece has no newline yet
        offset += len(raw) + 1
        parsed = router_line(raw)
        if parsed is not None:
            by_app[parsed[0]].append(parsed[1])
    if not data.count(b"\n"):
        return inode, offset, []
    where = {"inode": inode, "offset": offset}
    # Every app's lines carry the read's end: they are stored in one transaction.
    items = [Item(None, name, lines, key, where) for name, lines in by_app.items()]
    return inode, offset, items or [Item(None, "", [], key, where)]


def store_items(*, items: list[Item]) -> list[StoredBatch]:
    """Group by app (router lines name their app), keep each source's last
    position, and store all of it in one transaction."""
    names = {i.app_name for i in items if i.app_id is None and i.app_name}
    ids = dict(App.objects.filter(name__in=names).values_list("name", "pk")) if names else {}
    by_app: dict[int, list[IngestLine]] = defaultdict(list)
    cursors: dict[str, dict[str, Any]] = {}
    for item in items:
        cursors[item.cursor_key] = item.position
        app_id = item.app_id if item.app_id is not None else ids.get(item.app_name)
        if app_id is not None:
            by_app[app_id].extend(item.lines)
    return logs_store(lines_by_app=dict(by_app), cursors=cursors)
