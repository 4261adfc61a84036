"""The inotify wrapper the agent's log tailers are woken by (real files, real kernel)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime_agent.host.inotify import Inotify


@pytest.fixture
def inotify():
    watcher = Inotify()
    yield watcher
    watcher.close()


def append(path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_it_says_which_watched_files_were_written(tmp_path, inotify):
    a, b, c = (tmp_path / n for n in "abc")
    for path in (a, b, c):
        path.touch()
    wa, wb, _ = (inotify.watch(p) for p in (a, b, c))
    assert inotify.take() == (set(), False)
    for i in range(500):  # interleaved: the kernel merges only identical neighbours
        append(a if i % 2 else b, b"x\n")
    assert inotify.take() == ({wa, wb}, False)
    assert inotify.take() == (set(), False)


def test_a_full_queue_is_reported_as_an_overflow(tmp_path, inotify):
    # More events than the kernel queues (fs.inotify.max_queued_events): any
    # watched file may have changed, and the caller wakes every reader.
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    a, b = tmp_path / "a", tmp_path / "b"
    fds = [os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) for p in (a, b)]
    try:
        inotify.watch(a)
        inotify.watch(b)
        for i in range(limit + 100):
            os.write(fds[i % 2], b"x")
    finally:
        for fd in fds:
            os.close(fd)
    assert inotify.take()[1] is True


def test_a_link_is_not_followed_and_a_gone_watch_is_no_error(tmp_path, inotify):
    target = tmp_path / "target"
    target.touch()
    (tmp_path / "link").symlink_to(target)
    wd = inotify.watch(tmp_path / "link")  # the link itself (IN_DONT_FOLLOW)
    append(target, b"x\n")
    assert wd not in inotify.take()[0]
    kept = inotify.watch(target)
    target.unlink()
    inotify.take()
    inotify.unwatch(kept)  # the kernel dropped it with the file: not an error
    with pytest.raises(FileNotFoundError):
        inotify.watch(tmp_path / "missing")
