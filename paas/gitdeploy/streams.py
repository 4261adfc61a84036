"""Run a blocking byte producer in a thread of its own and hand its chunks
to the server as they come.

Why: Django buffers a ``StreamingHttpResponse`` whole when its iterator
does not match the server (a sync iterator under ASGI is consumed with
``list()`` first, an async one under WSGI too). A git push must stream:
someone is watching. So a view gives daphne an async iterator and the WSGI
test server a sync one, both reading one queue fed by one thread. (The log
follow needs no thread: it is async from the start, paas/logs/live_stream.py.)
One thread, not a thread per chunk: the producer touches the database, and
its connection must stay in, and be closed by, the thread that opened it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator

from django import db

log = logging.getLogger(__name__)
_END = object()
WAIT_S = 1.0
# A client that reads nothing for this long is taken for gone (a server may
# never close the iterator of a request whose client vanished).
STALLED_S = 300.0


class ThreadedStream:
    def __init__(self, produce: Callable[[], Iterator[bytes]], name: str) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        for _ in range(int(STALLED_S / WAIT_S)):
            if self._stop.is_set():
                return False
            try:
                self._queue.put(item, timeout=WAIT_S)
                return True
            except queue.Full:
                continue
        log.warning("a git client read nothing for %.0f s; its response is dropped", STALLED_S)
        self._stop.set()
        return False

    def _run(self, produce: Callable[[], Iterator[bytes]]) -> None:
        chunks = produce()
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    break  # the client went away
        except Exception:
            log.exception("a git response stream failed")
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
            self._put(_END)
            db.connection.close()

    def _get(self) -> object:
        while True:
            try:
                return self._queue.get(timeout=WAIT_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    return _END

    def sync_iter(self) -> Generator[bytes, None, None]:
        try:
            while (item := self._get()) is not _END:
                assert isinstance(item, bytes)
                yield item
        finally:
            self._stop.set()

    async def async_iter(self) -> AsyncIterator[bytes]:
        try:
            while (item := await asyncio.to_thread(self._get)) is not _END:
                assert isinstance(item, bytes)
                yield item
        finally:
            self._stop.set()


def streaming_content(
    request: object, stream: ThreadedStream
) -> Iterator[bytes] | AsyncIterator[bytes]:
    """The iterator that matches the server the request came through."""
    from django.core.handlers.asgi import ASGIRequest

    return stream.async_iter() if isinstance(request, ASGIRequest) else stream.sync_iter()
