"""A container's stored log lines, read a block at a time.

A follower that fell behind a flood comes back with ``since`` for 100k
lines or more, up to everything a container's log keeps (log.jsonl and its
rotated files, 50 MiB by default: 300k-600k lines). Read in one go that
held the agent's event loop for 0.3-0.5 s, and every other container's
tailer and every other follow stream with it. :class:`StoredHistory` reads
at most one BLOCK per :meth:`~StoredHistory.step`, and a follow takes a
step only when its stream asks for the next chunk (``LogFollow.chunk``):
the loop runs everything else between two blocks, and a slow client reads
the history no faster than it takes it (one block in memory, not the log).

What the history is, exactly: the bytes each log file held when the follow
began. The files are opened, and their sizes taken, in the same synchronous
step that subscribes the follower to new lines (the tailer appends a batch
and hands it to its followers in one step too), so every line is either in
the history or pushed live, never both, never neither. The fds keep that
history readable after a rotation renames or deletes its files.

The files are the agent's own, under its per-container ``logs`` directory,
yet they are opened beneath an fd of that directory with no link followed
(:func:`open_stored`): a link in a log file's place is refused and said in
the agent's log, never read through.
"""

from __future__ import annotations

import io
import logging
import os
import stat
from pathlib import Path

from runtime_agent import wire
from runtime_agent.containers.log_records import RECORD_HEAD, parse_stored, rfc3339, stored_record
from runtime_agent.host import safepath
from runtime_agent.host.errors import UnsafePath

log = logging.getLogger("runtime_agent.logs")

JSONL = "log.jsonl"  # and its rotated files log.jsonl.1 (newest) ... log.jsonl.<max_files-1>
# Work per step: ~500-1000 records, ~1-3 ms of the loop on a busy host.
BLOCK = 64 * 1024


def log_names(max_files: int) -> list[str]:
    """Names of the log files a logs directory can hold, oldest first."""
    return [*(f"{JSONL}.{i}" for i in range(max_files - 1, 0, -1)), JSONL]


class StoredFile:
    """One log file opened for a read: its fd and its size at that moment."""

    def __init__(self, raw: io.FileIO, size: int) -> None:
        self.raw = raw
        self.size = size

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self.raw.fileno(), length, offset)

    def close(self) -> None:
        self.raw.close()


def open_stored(log_dir: Path, names: list[str]) -> list[StoredFile]:
    """``names`` (oldest first) of ``log_dir`` that exist, opened beneath it
    with no symlink followed; a link or anything but a regular file in a
    log file's place is left unread and logged (O_NONBLOCK: a FIFO there
    must not hang the loop)."""
    try:
        dir_fd = safepath.open_dir(log_dir)
    except FileNotFoundError:
        return []
    opened: list[StoredFile] = []
    with safepath.closing(dir_fd):
        for name in names:
            try:
                fd = safepath.openat2(dir_fd, name, os.O_RDONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            except UnsafePath:
                log.error("%s is a link, not a log file: refused, not read", log_dir / name)
                continue
            raw = io.FileIO(fd, "rb")
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raw.close()
                log.error("%s is not a regular file: refused, not read", log_dir / name)
                continue
            opened.append(StoredFile(raw, info.st_size))
    return opened


class StoredHistory:
    """The stored records of ``files`` (oldest first) a follow begins with:
    the last ``tail`` of those at or after ``since``, oldest first.

    Where they start is found first, reading backwards from the end a block
    per step (lines are appended in time order); then they are read forwards
    from there, a block per step. Records this agent wrote are taken as
    stored, not parsed (log_records.stored_record); a torn one is skipped.
    """

    def __init__(self, files: list[StoredFile], tail: int | None, since: float | None) -> None:
        self._tail = tail
        self._cutoff = rfc3339(since) if since is not None else None
        self._files = self._needed(files)
        files = self._files
        self._found = 0  # records counted from the end while looking for the start
        self._locating = bool(files) and (tail is not None or since is not None)
        self._scan_file = len(files) - 1
        self._scan_end = files[-1].size if files else 0
        self._scan_carry = b""  # the head of the block after, up to its first newline
        self._pos = 0  # where the forward read is in the first file left
        self._carry = b""  # a line the last forward block cut
        self._pending: list[str] = []
        if tail == 0:
            self.close()

    def _needed(self, files: list[StoredFile]) -> list[StoredFile]:
        """``files`` less those wholly older than ``since``, closed at once
        (one small read per file): a follower back with ``since`` holds one or
        two fds while its history is sent, not one per rotated file."""
        if self._cutoff is None:
            return files
        for i in range(len(files) - 1, 0, -1):
            head = files[i].pread(4096, 0)
            first = stored_record(head[: head.find(b"\n") + 1]) if b"\n" in head else None
            if first is not None and first[0] < self._cutoff:  # all before it are older
                for f in files[:i]:
                    f.close()
                return files[i:]
        return files

    @property
    def done(self) -> bool:
        return not self._files and not self._pending

    def step(self, most: int) -> list[str] | None:
        """One block's work: up to ``most`` records; [] when this step only
        looked for the start; None once everything was given."""
        if not self._pending and self._files:
            if self._locating:
                self._locating = not self._scan_block()
                return []
            self._pending = self._read_block()
        if not self._pending:
            return None if self.done else []
        records, self._pending = self._pending[:most], self._pending[most:]
        return records

    def read_all(self) -> list[str]:
        """Every record at once (a read that is not a follow)."""
        out: list[str] = []
        while (records := self.step(BLOCK)) is not None:
            out += records
        return out

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []
        self._pending = []

    # --- finding the start, backwards --------------------------------------------

    def _scan_block(self) -> bool:
        """Look one block further back; True once the start is known."""
        f = self._files[self._scan_file]
        start = max(0, self._scan_end - BLOCK)
        data = f.pread(self._scan_end - start, start) + self._scan_carry
        if start > 0:  # the block's first line began before it: kept for the next block
            cut = data.find(b"\n") + 1
            self._scan_carry, body = (data, b"") if cut == 0 else (data[:cut], data[cut:])
        else:
            self._scan_carry, body = b"", data
        if body:
            found = self._scan_lines(body, start + len(data) - len(body))
            if found is not None:
                return self._begin_at(self._scan_file, found)
        self._scan_end = start
        if start == 0:
            if self._scan_file == 0:  # the whole log is wanted
                return self._begin_at(0, 0)
            self._scan_file -= 1
            self._scan_end, self._scan_carry = self._files[self._scan_file].size, b""
        return False

    def _scan_lines(self, body: bytes, base: int) -> int | None:
        """Where the wanted records start if it is in ``body`` (whole lines
        at offset ``base``), else None (all of them are wanted)."""
        if self._all_wanted(body):
            self._found += body.count(b"\n")
            return None
        end = base + len(body)
        for raw in reversed(body.splitlines(keepends=True)):
            end -= len(raw)
            stored = stored_record(raw)
            if stored is None:
                continue
            if self._cutoff is not None and stored[0] < self._cutoff:
                return end + len(raw)
            self._found += 1
            if self._tail is not None and self._found >= self._tail:
                return end
        return None

    def _all_wanted(self, body: bytes) -> bool:
        """Cheap check that every line of ``body`` is wanted, without a look
        at each: all of them whole records of this agent (one head each, see
        stored_record), few enough for the tail, the first one recent enough."""
        lines = body.count(b"\n")
        if body.count(RECORD_HEAD) != lines:  # a torn record or an older agent's: one by one
            return False
        if self._tail is not None and self._found + lines >= self._tail:
            return False
        if self._cutoff is None:
            return True
        first = stored_record(body[: body.find(b"\n") + 1])
        return first is not None and first[0] >= self._cutoff

    def _begin_at(self, index: int, offset: int) -> bool:
        for f in self._files[:index]:
            f.close()
        self._files = self._files[index:]
        self._pos, self._scan_carry = offset, b""
        return True

    # --- reading, forwards --------------------------------------------------------

    def _read_block(self) -> list[str]:
        while self._files:
            f = self._files[0]
            data = f.pread(min(BLOCK, f.size - self._pos), self._pos) if self._pos < f.size else b""
            if not data:  # this file's end (as it was when the read began)
                last, self._carry = self._carry, b""
                self._files.pop(0).close()
                self._pos = 0
                stored = stored_record(last) if last else None
                if stored is not None:
                    return [stored[1]]
                continue
            self._pos += len(data)
            data = self._carry + data
            cut = data.rfind(b"\n") + 1
            self._carry = data[cut:]
            lines = data[:cut].splitlines(keepends=True)
            return [s[1] for raw in lines if (s := stored_record(raw)) is not None]
        return []


def read_records(
    log_dir: Path, names: list[str], tail: int | None, since: float | None
) -> list[str]:
    """All at once: the records a follow's history would be (see StoredHistory)."""
    history = StoredHistory(open_stored(log_dir, names), tail, since)
    try:
        return history.read_all()
    finally:
        history.close()


def read_stored(
    log_dir: Path, names: list[str], tail: int | None, since: float | None
) -> list[wire.LogLine]:
    """As :func:`read_records`, as lines."""
    lines = (parse_stored(record) for record in read_records(log_dir, names, tail, since))
    return [line for line in lines if line is not None]  # a damaged disk: skip, not fail
