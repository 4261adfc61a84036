"""Container logs without a helper process.

A container's stdout and stderr are plain files, ``logs/stdout.raw`` and
``logs/stderr.raw``, opened ``O_APPEND`` and handed to ``runc create`` as the
process's fds: the container writes straight into them, nothing of ours sits
in the pipe, and they outlive the agent. The agent tails them (one asyncio
task per container, woken by an inotify watch on the raw files when they are
written (:class:`WriteWatch`), and every ``poll_s`` anyway) into
``logs/log.jsonl``: one compact JSON object per line,
``{"time":RFC 3339 UTC,"stream":...,"line":...,"n":N}`` (:func:`line_json`:
the same bytes are what a follow stream sends), size-capped and rotated
(``log.jsonl.1`` ... ``log.jsonl.<max_files-1>``). Files written by older
agents (the same keys, with spaces) read the same.

``n`` numbers the container's lines 1, 2, 3... (the count is kept with the
read offsets). Rotation drops the oldest file whether or not anyone read it
(the disk is capped, not the reader's patience); a reader that was too far
behind sees the numbers jump and can say how many lines it lost, instead of
losing them silently.

The raw read offsets are persisted in ``logs/offsets.json`` after each batch
(overwritten in place, :class:`OffsetsFile`), so a new agent resumes where
the old one stopped: no line lost, none repeated
(a crash *between* writing a batch and its offsets can repeat that one
batch; a clean shutdown cannot). Timestamps are taken when the agent reads a
line (moments after the write while the agent runs; lines written while
the agent is down get the time they are read).

Unread backlog cap: a container that writes faster than the agent reads
(``yes`` makes ~250 MB/s) would grow its raw file's unread part without
bound, a tenant filling the host's disk. Past ``backlog_bytes`` unread bytes
in a stream the agent drops the oldest of them (keeping the newest half of
the cap, from a line boundary), punches them out, and writes one notice
line saying how many bytes were dropped; the app is never blocked (as
Heroku's logplex: drop, never block). The check runs before every read and,
so that it holds while the event loop is too busy to read, in a watchdog
thread every ``watch_s`` (:class:`BacklogWatch`). While the agent is down
nothing checks: the next agent checks each stream as it opens the
container's logs (:meth:`LogStreams.open`), before anything else.

Followers (``follow=True``) get new lines pushed the moment they are
written to ``log.jsonl``; the history's files are opened (their sizes
taken) and the follower subscribed in one synchronous step of the event
loop, so a follower neither misses nor doubles a line, and the history is
read from those fds a block at a time as the stream sends it
(log_history.py), so a long one never holds the loop.
Each batch the tailer stores is appended to every follower's list as it is
written and the follower's waiter is woken then (:class:`LogFollow`): the
API's stream takes what piled up straight from there, with no task in
between (each hop cost a pass of a loop that a flood makes 100-270 ms long).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime_agent import wire
from runtime_agent.containers.log_history import (
    JSONL,
    StoredHistory,
    log_names,
    open_stored,
    read_stored,
)
from runtime_agent.containers.log_records import (
    LogFollow,
    json_string,
    line_json,
    record_line,
    rfc3339,
)
from runtime_agent.containers.log_records import (
    parse_time as parse_time,  # re-exported: callers read times with it
)
from runtime_agent.host.errors import DISK_ERRNOS, UnsafePath
from runtime_agent.host.inotify import Inotify
from runtime_agent.host.libc import get_errno, libc

log = logging.getLogger("runtime_agent.logs")

STREAMS = ("stdout", "stderr")
OFFSETS = "offsets.json"
OFFSETS_SIZE = 512  # offsets.json is this long, padded: less than a sector (OffsetsFile)
# A line longer than this without a newline is cut, so one runaway writer
# cannot make the agent buffer without bound.
MAX_LINE = 16 * 1024
# Read per stream at once: ~1100 short lines, a few ms of the event loop.
# A tailer that is behind reads on for at most ``LogConfig.turn_s``, then lets
# everything else that is ready run (other containers' tailers, followers'
# streams) and goes again at once rather than after ``poll_s``, up to
# CHUNKS_PER_POLL reads: a backlog drains at the same most per poll as before
# (1 MiB a stream), in turns. (One 1 MiB read, ~17k lines, held the loop for
# 50-650 ms on a busy host, and a quiet container's lines waited that long.)
READ_CHUNK = 64 * 1024
CHUNKS_PER_POLL = 16
PUNCH_EVERY = 64 * 1024  # free consumed raw bytes once this much has piled up
REDIS_STREAM_PREFIX = "paas:container-logs:"
WARN_EVERY_S = 60.0  # the agent's own log says a container's output is dropped at most this often
FAILING_BACKOFF = 25  # polls are this much slower while a tailer's turns fail (a full disk...)

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


@dataclass(frozen=True)
class LogConfig:
    max_bytes: int = 10 * 1024 * 1024  # per log.jsonl file
    max_files: int = 5  # log.jsonl plus max_files-1 rotated ones
    poll_s: float = 0.05
    turn_s: float = 0.02  # a tailer that is behind holds the event loop about this long at most
    redis_url: str | None = None
    redis_maxlen: int = 10_000  # approximate cap of each container's Redis stream
    # Unread raw bytes per stream past which the oldest are dropped (see the
    # module docstring); checked before every read and every watch_s.
    backlog_bytes: int = 64 * 1024 * 1024
    # A file can pass the cap by the writer's rate times this (GNU yes into a
    # page-cached file: ~1.2 GB/s here, so ~25 MB), and costs one fstat per
    # stream per check: 200 containers, ~20k cheap syscalls a second.
    watch_s: float = 0.02


def raw_path(log_dir: Path, stream: str) -> Path:
    return log_dir / f"{stream}.raw"


def open_raw_fds(log_dir: Path) -> tuple[int, int]:
    """The container's (stdout, stderr): append-only files the process writes itself.

    O_APPEND makes every write land at the current end even though the agent
    punches holes at the start; the caller closes its copies once runc has them.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a link there is refused (ELOOP), never written through.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    out = os.open(raw_path(log_dir, "stdout"), flags, 0o640)
    try:
        err = os.open(raw_path(log_dir, "stderr"), flags, 0o640)
    except BaseException:
        os.close(out)
        raise
    return out, err


def punch_hole(fd: int, length: int) -> bool:
    """Free the disk blocks of the first ``length`` bytes of ``fd``.

    Why: the raw files are written by the container through its own O_APPEND
    fd, so the agent cannot truncate or rotate them without racing the writer
    (bytes written between our last read and a truncate would be lost). A
    punched hole keeps the file size and every offset as they are but returns
    the blocks of already-consumed bytes to the filesystem, so the raw files
    stay small on disk however long the container runs.
    """
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    if libc.fallocate(fd, mode, 0, length) == 0:
        return True
    code = get_errno()
    if code in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False  # a filesystem without hole punching: the file just keeps its blocks
    raise OSError(code, os.strerror(code))


class _RawStream:
    """One raw file being tailed: where we are, what is left of a partial line."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset  # first byte not yet turned into a log line
        self.punched = offset - offset % 4096
        self.fd: int | None = None
        self.dropped = 0  # bytes skipped that no notice line has told of yet
        self.refused = False  # a link was found in the file's place (said once)

    def _open(self) -> int | None:
        if self.fd is None:
            try:
                # Read-write: fallocate needs a writable fd. No link followed:
                # holes are punched in what this opens.
                self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                if not self.refused:
                    self.refused = True
                    log.error("%s is a link, not an output file: refused, not read", self.path)
                return None
        return self.fd

    def read_new(self) -> bytes:
        fd = self._open()
        return b"" if fd is None else os.pread(fd, READ_CHUNK, self.offset)

    def skip_backlog(self, cap: int) -> int:
        """If more than ``cap`` bytes are unread, skip to the newest ``cap // 2``
        of them, from the start of a line; returns how many bytes were skipped.

        One fstat when under the cap, so it can run before every read. A line
        start is looked for within MAX_LINE bytes; without one the cut falls
        where a runaway line would be cut anyway.
        """
        fd = self._open()
        if fd is None:
            return 0
        size = os.fstat(fd).st_size
        if size - self.offset <= cap:
            return 0
        target = size - cap // 2
        head = os.pread(fd, MAX_LINE, target)
        newline = head.find(b"\n")
        resume = target + (newline + 1 if newline >= 0 else len(head))
        skipped = resume - self.offset
        self.offset = resume
        self.dropped += skipped
        return skipped

    def free_consumed(self, *, now: bool = False) -> None:
        upto = self.offset - self.offset % 4096
        if (
            self.fd is None
            or upto <= self.punched
            or (upto - self.punched < PUNCH_EVERY and not now)
        ):
            return
        if punch_hole(self.fd, upto):
            self.punched = upto

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def dropped_notice(stream: str, dropped: int, cap: int) -> str:
    """The line that stands where skipped output was (see :meth:`_RawStream.skip_backlog`)."""
    return (
        f"[paas] {dropped} bytes of {stream} were dropped here: the app wrote faster than"
        f" its log is read, and unread output past {cap} bytes"
        " (PAAS_AGENT_LOG_BACKLOG_BYTES) is dropped rather than filling the disk"
    )


def split_lines(data: bytes, *, final: bool) -> tuple[list[bytes], int]:
    """Complete lines in ``data`` and how many bytes they used.

    A trailing partial line waits for its newline unless it is too long or
    ``final`` (the writer is gone) says no newline will come.
    """
    lines: list[bytes] = []
    used = 0
    while True:
        nl = data.find(b"\n", used, used + MAX_LINE + 1)
        if nl >= 0:
            lines.append(data[used:nl])
            used = nl + 1
            continue
        rest = len(data) - used
        if rest >= MAX_LINE or (final and rest > 0):
            take = min(rest, MAX_LINE)
            lines.append(data[used : used + take])
            used += take
            continue
        return lines, used


def records_of(
    stream: str, lines: list[bytes], first: int, *, objects: bool
) -> tuple[list[str], list[wire.LogLine]]:
    """Raw lines of one read as records numbered from ``first`` (what
    :func:`line_json` makes, without a LogLine each), and as LogLines only
    if ``objects`` (for Redis)."""
    now = rfc3339(_now())
    head = f'{{"time":"{now}","stream":{json_string(stream)},"line":'
    texts = [_decode(b) for b in lines]
    records = [f'{head}{json_string(t)},"n":{n}}}\n' for n, t in enumerate(texts, first)]
    if not objects:
        return records, []
    return records, [wire.LogLine(now, stream, t, n) for n, t in enumerate(texts, first)]


def append_lines(log_dir: Path, cfg: LogConfig, data: bytes) -> None:
    """Append NDJSON records to log.jsonl, rotating first if it would pass ``max_bytes``."""
    path = log_dir / JSONL
    # No link followed (ELOOP): the lines wait in the raw files meanwhile.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o640)
    size = os.fstat(fd).st_size
    if size and size + len(data) > cfg.max_bytes:
        os.close(fd)
        rotate(log_dir, cfg.max_files)
        fd, size = os.open(path, flags, 0o640), 0
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        # All or nothing: no half line for readers, and the caller reads
        # these lines again.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise
    finally:
        os.close(fd)


def rotate(log_dir: Path, max_files: int) -> None:
    """log.jsonl -> log.jsonl.1 -> ... ; the oldest beyond max_files is dropped."""
    keep = max_files - 1
    oldest = log_dir / f"{JSONL}.{keep}" if keep else log_dir / JSONL
    oldest.unlink(missing_ok=True)
    for i in range(keep - 1, 0, -1):
        src = log_dir / f"{JSONL}.{i}"
        if src.exists():
            os.replace(src, log_dir / f"{JSONL}.{i + 1}")
    if keep and (log_dir / JSONL).exists():
        os.replace(log_dir / JSONL, log_dir / f"{JSONL}.1")


class OffsetsFile:
    """offsets.json: where each raw stream was read up to, and the line count.

    Saved after every batch, by overwriting the file in place with one
    pwrite of OFFSETS_SIZE bytes. Why not a temp file and a rename: that
    cost ~125 us on a quiet ext4 and much more on a busy one (a rename over
    a file flushes the new one's data and frees, and here discards, the old
    one's blocks), after every batch of every container: a third of the
    agent's event loop under a flood. A single pwrite of less than a sector
    at offset 0 is all or nothing when the agent dies (the kernel copies it
    under the inode's lock); the padding is JSON whitespace, so the file
    reads as before, and files written by older agents read the same.
    """

    KEYS = (*STREAMS, "lines", *(f"{s}_dropped" for s in STREAMS))

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def load(self) -> dict[str, int]:
        # Never through a link (as save): a link here would make the agent
        # resume every stream from numbers read out of another file.
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{self.path} is a link, not the agent's offsets file") from exc
            raise
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(4 * OFFSETS_SIZE))
        return {k: int(data.get(k, 0)) for k in self.KEYS}

    def save(self, offsets: dict[str, int]) -> None:
        data = json.dumps(offsets).encode().ljust(OFFSETS_SIZE)
        fresh = self._fd is None
        if self._fd is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            self._fd = os.open(self.path, flags, 0o640)
        if os.pwrite(self._fd, data, 0) != len(data):
            raise OSError(errno.EIO, f"short write to {self.path}")
        if fresh:  # after the write, so the file is never cut short of a whole record
            os.ftruncate(self._fd, OFFSETS_SIZE)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class TailFailures:
    """What a tailer's turns keep failing with, said once per episode.

    A failed turn is tried again after a back-off, and the lines wait in the
    raw files meanwhile (nothing is consumed until written). The same error
    again says nothing: a full disk, or a link in ``log.jsonl``'s place, would
    otherwise put a traceback in the agent's log every poll. Another error is
    said, and the first turn that works says the logs flow again.
    """

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.dir = log_dir
        self.current: tuple[type, int | None] | None = None
        self.tries = 0  # failed turns in a row

    def failed(self, exc: Exception) -> None:
        errno_ = exc.errno if isinstance(exc, OSError) else None
        self.tries += 1
        if (type(exc), errno_) != self.current:
            if errno_ in DISK_ERRNOS:
                log.warning("logs of %s wait: %s is out of disk space", self.name, self.dir)
            else:
                log.error("tailing the logs of %s failed (said once while it lasts)", self.name,
                          exc_info=exc)  # fmt: skip
        self.current = (type(exc), errno_)

    def worked(self) -> None:
        if self.current is not None:
            back = ": disk space is back" if self.current[1] in DISK_ERRNOS else ""
            log.warning("logs of %s flow again%s (after %d failed tries)", self.name, back,
                        self.tries)  # fmt: skip
        self.current, self.tries = None, 0


class LogTailer:
    """Tails one container's raw files into its rotated JSONL log."""

    def __init__(self, name: str, log_dir: Path, cfg: LogConfig, redis: Any | None = None) -> None:
        self.name = name
        self.dir = log_dir
        self.cfg = cfg
        self.redis = redis
        self.dir.mkdir(parents=True, exist_ok=True)
        self._offsets = OffsetsFile(log_dir / OFFSETS)
        offsets = self._offsets.load()
        self.streams = {s: _RawStream(raw_path(log_dir, s), offsets.get(s, 0)) for s in STREAMS}
        for s, raw in self.streams.items():
            raw.dropped = offsets.get(f"{s}_dropped", 0)
        # The event loop's reads and the backlog watchdog's skips (another
        # thread) both move the offsets: one at a time.
        self._lock = threading.Lock()
        self._warned_at = -WARN_EVERY_S
        self.numbered = offsets.get("lines", 0)  # lines written to log.jsonl so far
        self._followers: set[LogFollow] = set()
        # Lines taken in but not yet sent to Redis: the exit flush pumps
        # synchronously, and its lines must reach the stream too.
        self._unpushed: list[wire.LogLine] = []
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        self._closed = False
        self.behind = False  # the last read stopped at READ_CHUNK, not at the end of a file
        self.failures = TailFailures(name, log_dir)  # why turns fail, said once

    # --- tailing ----------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"logs-{self.name}")

    async def _run(self) -> None:
        failures, turns = self.failures, 0  # turns: reads since the last poll_s sleep
        while True:
            again = False
            try:
                turns += self._take_turn(CHUNKS_PER_POLL - turns)
                again = self.behind and turns < CHUNKS_PER_POLL
                await self._push_pending()
            except Exception as exc:  # keep tailing: one bad poll must not end the container's logs
                failures.failed(exc)
            else:
                failures.worked()
            if again:  # more is waiting: read on once everything else ready had its turn
                await asyncio.sleep(0)
            elif failures.current or turns >= CHUNKS_PER_POLL:  # backing off, or a flood's share
                turns = 0
                await asyncio.sleep(self.cfg.poll_s * (FAILING_BACKOFF if failures.current else 1))
            else:
                turns = 0
                await self._until_written()

    def wake(self) -> None:
        """A raw file was written (LogStreams' inotify says so): read now, not at the next poll."""
        self._woken.set()

    async def _until_written(self) -> None:
        """Wait for :meth:`wake`, or ``poll_s`` at most (the fallback poll)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cfg.poll_s):
                await self._woken.wait()
        self._woken.clear()  # before the read: a write from now on wakes the next wait

    def _take_turn(self, reads: int) -> int:
        """Pump, and while behind pump on for up to ``turn_s`` (at most
        ``reads`` times); returns how many reads it made."""
        started = time.monotonic()
        done = 0
        while done < max(reads, 1):
            self._pump_once(final=False)
            done += 1
            if not self.behind or time.monotonic() - started >= self.cfg.turn_s:
                break
        return done

    def pump(self, *, final: bool = False) -> list[wire.LogLine]:
        """Move every new raw line into the JSONL log and to the followers.

        Synchronous on purpose: writing the file and notifying the followers
        happen in one step of the event loop (see the module docstring).
        At most READ_CHUNK per stream (see :meth:`drain` for all of it);
        ``final`` (the writer has exited) also takes a last line that has no
        newline at the end of a file.
        """
        return [record_line(record) for record in self._pump_once(final=final)]

    def drain(self) -> int:
        """Take in everything a container that exited left (a last line without
        a newline too); returns how many lines came. Keeps no line in memory:
        the backlog of a container that wrote faster than it was read can be
        gigabytes (collected, the agent grew by 10 GB for a 2.5 GB backlog)."""
        count = 0
        while more := self._pump_once(final=True):
            count += len(more)
        return count

    def enforce_backlog(self) -> None:
        """Skip what is past the unread cap now (the watchdog thread calls this)."""
        with self._lock:
            if not self._closed:
                self._skip_backlogs()

    def _skip_backlogs(self) -> None:
        """With the lock held: drop each stream's unread bytes past the cap.

        The new offsets (and the bytes still to be told of) are saved before
        the hole is punched, so a crash never resumes inside a hole."""
        skipped = [raw for raw in self.streams.values() if raw.skip_backlog(self.cfg.backlog_bytes)]
        if skipped:
            self._save_offsets()
            for raw in skipped:
                raw.free_consumed(now=True)
            if (
                time.monotonic() - self._warned_at >= WARN_EVERY_S
            ):  # a flood skips ~50 times a second
                self._warned_at = time.monotonic()
                log.warning("logs of %s: unread output past the backlog cap is dropped", self.name)

    def _pump_once(self, *, final: bool) -> list[str]:
        with self._lock:
            return self._pump_locked(final=final)

    def _pump_locked(self, *, final: bool) -> list[str]:
        """At most one READ_CHUNK per stream, so a poll never stalls the loop;
        returns the NDJSON records stored.

        Records are made straight from the raw lines, with no LogLine per
        line (only for Redis): under a flood the objects cost CPU to build
        and, kept by a lagging follower, made the collector's full passes
        (100-170 ms each, the whole loop stopped) come every second or two.
        """
        records: list[str] = []
        used_by: list[tuple[_RawStream, int]] = []
        unpushed: list[wire.LogLine] = []
        self.behind = False
        self._skip_backlogs()
        for stream, raw in self.streams.items():
            if raw.dropped:  # numbered like any line: followers and since= see it in order
                text = dropped_notice(stream, raw.dropped, self.cfg.backlog_bytes)
                n = self.numbered + len(records) + 1
                notice = wire.LogLine(rfc3339(_now()), stream, text, n)
                records.append(line_json(notice))
                unpushed.append(notice)
            data = raw.read_new()
            # Only at the end of the file is a partial line really the last one;
            # a chunk boundary can fall anywhere.
            at_end = len(data) < READ_CHUNK
            self.behind = self.behind or not at_end
            lines, used = split_lines(data, final=final and at_end)
            used_by.append((raw, used))
            if not lines:
                continue
            first = self.numbered + len(records) + 1
            new, as_lines = records_of(stream, lines, first, objects=self.redis is not None)
            records += new
            unpushed += as_lines
        if not records:
            return records
        append_lines(self.dir, self.cfg, "".join(records).encode())
        # Consumed only once written: a write that failed (a full disk) reads
        # the same lines again on the next poll instead of losing them.
        for raw, used in used_by:
            raw.offset += used
            raw.dropped = 0  # told of by the notice just written
        self.numbered += len(records)
        self._save_offsets()
        for raw in self.streams.values():
            raw.free_consumed()
        self._notify(records)
        if self.redis is not None:
            self._unpushed.extend(unpushed)
        return records

    def _save_offsets(self) -> None:
        offsets = {s: r.offset for s, r in self.streams.items()}
        offsets |= {f"{s}_dropped": r.dropped for s, r in self.streams.items()}
        self._offsets.save({**offsets, "lines": self.numbered})

    async def _push_pending(self) -> None:
        lines, self._unpushed = self._unpushed, []
        if lines:
            assert self.redis is not None
            await push_redis(self.redis, self.name, self.cfg.redis_maxlen, lines)

    async def close(self) -> None:
        """Stop tailing: take what is left, persist offsets, end the followers."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._closed:
            self._pump_once(final=False)
            await self._push_pending()
        with self._lock:
            self._closed = True
            for raw in self.streams.values():
                raw.close()
            self._offsets.close()
        for follower in list(self._followers):
            follower.end()
        self._followers.clear()

    # --- reading ----------------------------------------------------------------

    def read(self, tail: int | None = None, since: float | None = None) -> list[wire.LogLine]:
        """Stored lines, oldest first: the last ``tail`` of those at or after ``since``."""
        return read_stored(self.dir, log_names(self.cfg.max_files), tail, since)

    def follow(self, tail: int | None = None, since: float | None = None) -> LogFollow:
        """History, then every new line until the container is removed or the caller stops.

        The files are opened (sizes taken) and the follower subscribed here,
        in one synchronous step: no line missed, none doubled; the history is
        read later, a block each time the stream asks (log_history.py)."""
        follower = LogFollow(self._history(tail, since), self._followers)
        if self._closed:
            follower.end()
        else:
            self._followers.add(follower)
        return follower

    def stored(self, tail: int | None = None, since: float | None = None) -> LogFollow:
        """The stored lines alone (a read, not a follow), a block at a time as sent."""
        reader = LogFollow(self._history(tail, since), set())
        reader.end()
        return reader

    def _history(self, tail: int | None, since: float | None) -> StoredHistory:
        return StoredHistory(open_stored(self.dir, log_names(self.cfg.max_files)), tail, since)

    def _notify(self, records: list[str]) -> None:
        for follower in list(self._followers):
            if not follower.push(records):
                log.warning("a follower of %s fell too far behind; ending its stream", self.name)
                self._followers.discard(follower)


async def push_redis(redis: Any, name: str, maxlen: int, lines: list[wire.LogLine]) -> None:
    """Best effort: Redis is a live-view buffer, log.jsonl stays the record."""
    key = REDIS_STREAM_PREFIX + name
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for ln in lines:
                fields = {"time": ln.time, "stream": ln.stream, "line": ln.line}
                pipe.xadd(key, fields, maxlen=maxlen, approximate=True)
            await pipe.execute()
    except Exception as exc:  # redis down or slow: the lines are safe on disk
        log.warning("could not push %d log lines of %s to redis: %s", len(lines), name, exc)


def _decode(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


def _now() -> float:
    return time.time()


def connect_redis(url: str | None) -> Any | None:
    """A ``redis.asyncio`` client for ``url`` (lazy: no connection until the first push)."""
    if not url:
        return None
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url)


class BacklogWatch:
    """A thread that holds every tailer's unread raw backlog under its cap.

    Why a thread: a flood is exactly when the event loop falls behind (every
    tailer and follower wants it), and a check that waits for the loop lets
    the file grow by the writer's rate times the loop's stall. This one runs
    every ``every_s`` whatever the loop does: one fstat per stream, plus a
    skip and a hole punch for a stream past its cap.
    """

    def __init__(self, tailers: Callable[[], list[LogTailer]], every_s: float) -> None:
        self._tailers = tailers
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="log-backlog", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            for tailer in self._tailers():
                try:
                    tailer.enforce_backlog()
                except OSError as exc:
                    if exc.errno not in DISK_ERRNOS:  # a full disk: the tailer says so, once
                        log.exception("holding the log backlog of %s failed", tailer.name)
                except Exception:  # one bad file must not end the watch over the others
                    log.exception("holding the log backlog of %s failed", tailer.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._stop.clear()  # a later open() starts watching again


class WriteWatch:
    """Wakes a tailer the moment its container writes (inotify on the raw files).

    Why: a tailer that polls every ``poll_s`` adds up to that much to every
    line (half of it on average), and ~50 tailers polling 20 times a second
    each is work the event loop does whether or not anything was written.
    One inotify fd for the whole agent, read by the event loop itself; no
    helper process or thread per container. Without inotify (the kernel's
    per-user limit reached) the tailers poll as before.
    """

    def __init__(self, poll_s: float) -> None:
        self._poll_s = poll_s
        self._inotify: Inotify | None = None
        self._unavailable = False
        self._tailers: dict[int, LogTailer] = {}  # watch descriptor -> its tailer

    def add(self, tailer: LogTailer) -> None:
        inotify = self._open()
        if inotify is None:
            return
        # A container is opened here at create; its process, which opens the
        # raw files, starts later: make them now so they can be watched.
        try:
            for fd in open_raw_fds(tailer.dir):
                os.close(fd)
        except OSError as exc:  # a link in a raw file's place (ELOOP): the tailer says so
            log.info("logs of %s are polled: %s", tailer.name, exc)
        for raw in tailer.streams.values():
            try:
                self._tailers[inotify.watch(raw.path)] = tailer
            except OSError as exc:  # not there yet, or out of watches: that stream polls
                log.info("logs of %s are polled: %s", tailer.name, exc)

    def remove(self, tailer: LogTailer) -> None:
        for wd in [wd for wd, t in self._tailers.items() if t is tailer]:
            del self._tailers[wd]
            if self._inotify is not None:
                self._inotify.unwatch(wd)

    def _open(self) -> Inotify | None:
        if self._inotify is None and not self._unavailable:
            try:
                self._inotify = Inotify()
            except OSError as exc:
                self._unavailable = True
                log.warning("no inotify (%s): logs are read every %s s", exc, self._poll_s)
                return None
            asyncio.get_running_loop().add_reader(self._inotify.fileno(), self._on_event)
        return self._inotify

    def _on_event(self) -> None:
        assert self._inotify is not None
        written, overflow = self._inotify.take()
        for wd, tailer in self._tailers.items():
            if overflow or wd in written:
                tailer.wake()

    def close(self) -> None:
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None
        self._tailers.clear()
        self._unavailable = False


class LogStreams:
    """The log tailer of every container, and the Redis client they share."""

    def __init__(self, cfg: LogConfig) -> None:
        self.cfg = cfg
        self._tailers: dict[str, LogTailer] = {}
        self._redis: Any = None
        self._watch = BacklogWatch(lambda: list(self._tailers.values()), cfg.watch_s)
        self._written = WriteWatch(cfg.poll_s)

    def connect(self) -> None:
        self._redis = connect_redis(self.cfg.redis_url)

    def open(self, name: str, log_dir: Path) -> None:
        """Start tailing a container's raw files (also after an agent restart)."""
        tailer = LogTailer(name, log_dir, self.cfg, self._redis)
        self._tailers[name] = tailer
        # At once, before this container is re-adopted and the API answers:
        # while the agent was down nothing held its backlog (module docstring).
        try:
            tailer.enforce_backlog()
        except OSError as exc:  # the watchdog and the first read try again
            log.warning("holding the log backlog of %s failed: %s", name, exc)
        tailer.start()
        self._watch.start()
        self._written.add(tailer)

    def lines(
        self, name: str, tail: int | None, since: float | None, follow: bool
    ) -> AsyncIterator[wire.LogLine]:
        """Stored lines (the last ``tail``, at or after ``since``), and with
        ``follow`` every new one until the container's tailer closes."""
        tailer = self._tailers[name]
        return tailer.follow(tail, since) if follow else tailer.stored(tail, since)

    def flush(self, name: str) -> None:
        """Take in the last bytes a container wrote before it exited."""
        tailer = self._tailers.get(name)
        if tailer is not None:
            tailer.drain()

    async def close(self, name: str) -> None:
        tailer = self._tailers.pop(name, None)
        if tailer is not None:
            self._written.remove(tailer)
            await tailer.close()

    async def close_all(self) -> None:
        await asyncio.to_thread(self._watch.stop)
        self._written.close()
        for tailer in self._tailers.values():
            await tailer.close()
        self._tailers.clear()
        if self._redis is not None:
            await self._redis.aclose()
