"""Persisted network state of one agent (``<root>/net/state.json``).

The file is the agent's memory of which container holds which address, netns,
veth and published ports. It must survive an agent restart (containers keep
running and are re-adopted) and must never be half-written, so every change is
a read-modify-write under a lock, written to a temporary file and renamed over
the old one (rename is atomic on the same filesystem).

The lock is an ``flock`` on a separate file, taken through a fresh open file
description per transaction: that serialises threads of this process (flock
locks belong to the open file, not the process) as well as a second process
mistakenly pointed at the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATE_VERSION = 1


def empty_state() -> dict[str, Any]:
    # groups: network group -> its number in the nft policy (net/policy.py)
    return {
        "version": STATE_VERSION,
        "last": None,
        "attachments": {},
        "ports": {},
        "groups": {},
        "next_gid": 0,
    }


class NetStateStore:
    """A JSON document guarded by a lock; ``transaction()`` is the only writer."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "state.json"
        self._lock_path = state_dir / "state.lock"
        # Re-entrant so a transaction may call helpers that read the state.
        self._thread_lock = threading.RLock()
        self._depth = 0
        # The file's text as of the last read or write in a transaction.
        self._written: str | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the state for changing; it is written back only on success."""
        with self._locked():
            self._written = self._read_text()
            state = _parse(self._written)
            yield state
            self._write(state)

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Persist ``state`` now, inside a transaction, before a risky step."""
        if not self._depth:
            raise RuntimeError("checkpoint() outside a transaction")
        self._write(state)

    def read(self) -> dict[str, Any]:
        return _parse(self._read_text())

    def _read_text(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth:  # nested in this thread: the flock is already ours
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
            finally:
                os.close(fd)  # closing releases the flock

    def _write(self, state: dict[str, Any]) -> None:
        data = _dump(state)
        if data == self._written:
            # Unchanged (an idempotent call, or nothing after a checkpoint):
            # an fsync'd rewrite costs about a millisecond on every start.
            return
        self._written = data
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _parse(text: str | None) -> dict[str, Any]:
    if text is None:
        return empty_state()
    data: dict[str, Any] = json.loads(text)
    for key, value in empty_state().items():
        data.setdefault(key, value)
    return data


def _dump(state: dict[str, Any]) -> str:
    return json.dumps(state, indent=1, sort_keys=True)
