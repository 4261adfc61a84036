"""The thread that feeds a git response to the server: every chunk in
order, sync or async, and a producer stopped (its generator closed, so its
git process is killed) when the client goes away."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from paas.gitdeploy.streams import ThreadedStream
from tests.support.processes import wait_until


def _numbers(closed: threading.Event, count: int = 1000) -> Iterator[bytes]:
    try:
        for n in range(count):
            yield b"%d\n" % n
    finally:
        closed.set()


def test_a_sync_reader_gets_every_chunk_in_order() -> None:
    closed = threading.Event()
    chunks = list(ThreadedStream(lambda: _numbers(closed), "t").sync_iter())
    assert chunks == [b"%d\n" % n for n in range(1000)]
    assert closed.is_set()


async def test_an_async_reader_gets_every_chunk_in_order() -> None:
    closed = threading.Event()
    chunks = [c async for c in ThreadedStream(lambda: _numbers(closed), "t").async_iter()]
    assert chunks == [b"%d\n" % n for n in range(1000)]


def test_a_reader_that_goes_away_stops_the_producer() -> None:
    closed = threading.Event()
    reader = ThreadedStream(lambda: _numbers(closed, 10**9), "t").sync_iter()
    assert next(reader) == b"0\n"
    reader.close()
    wait_until(closed.is_set, timeout_s=30, what="the producer to be closed")
