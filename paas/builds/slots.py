"""At most PAAS_BUILD_SLOTS builds at once in one worker process, so the
worker's other thread(s) stay free for the control loops.

The worker is one process whose pool threads (Procfile: one more than the
build slots) take tasks from two queues: ``builds`` (builds.run alone) and
the default one (deploys and the beat's control loops: heartbeat, observe,
reconcile, the sweeps). A build can run for many minutes; if builds could
take every thread, a lost host would be noticed, and its instances moved,
only when a build ended. So the worker stops *taking* builds while its build
slots are full, and takes them again when one frees:

- A waiting build stays in Redis, in order, as a plain queued message: a
  worker that dies loses nothing and holds nothing (no prefetched build, no
  half-hour visibility timeout for it), its state stays "queued" (no lease
  is taken), and cancelling it works as for any queued build.
- Weighed against the other design, a third thread that bounces a build it
  cannot start back to the queue with a countdown: the worker would then
  pull every queued build into its memory as a delayed message (each
  publish+ack every few seconds, the order lost, and all of them stranded
  for the visibility timeout if the worker is killed). Stopping the
  consumer costs nothing while builds wait. A second queue alone reserves
  nothing: one consumer's prefetch is shared, so builds could still fill
  every thread.
- Memory: one more idle pool thread. bench/footprint.py, main and this
  back to back (2026-12-05 06:39-06:45, load 4-6): the worker 82.4 / 83.0
  MiB on main, 83.0 / 82.6 MiB here (noise; totals 247.7 / 254.2 vs
  252.8 / 251.6, moved by the registry and Redis sharing pages).

Pausing the queue is done on the consumer's own loop (``call_soon`` is
thread-safe), as one idempotent step that reads the slots when it runs, so
the order in which two threads ask for it does not matter. A build that the
worker had already fetched before the pause (it prefetches one message per
thread) finds no slot and goes back to the queue with a short countdown
(rare: only when builds arrive together).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import signals
from django.conf import settings

log = logging.getLogger(__name__)

BUILD_QUEUE = "builds"


class BuildSlots:
    """A counter of running builds with a non-blocking take."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._busy = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._busy >= self.size:
                return False
            self._busy += 1
            return True

    def give(self) -> None:
        with self._lock:
            self._busy -= 1

    @property
    def full(self) -> bool:
        with self._lock:
            return self._busy >= self.size


class _Consuming:
    """The worker's consumer (set once it is ready) and whether this module
    paused its builds queue: only a pause of ours is undone, so a worker
    started without that queue (``-Q``) never starts taking builds."""

    def __init__(self) -> None:
        self.consumer: Any = None
        self.paused = False


SLOTS = BuildSlots(settings.PAAS_BUILD_SLOTS)
_state = _Consuming()


@signals.worker_ready.connect
def _remember_consumer(sender: Any = None, **_: Any) -> None:
    _state.consumer = sender
    threads = getattr(getattr(sender, "controller", None), "concurrency", None)
    if isinstance(threads, int) and threads <= SLOTS.size:
        log.warning(
            "the worker runs %d task(s) at once and PAAS_BUILD_SLOTS is %d: builds can "
            "take every thread and hold up the control loops (heartbeat, reconcile); "
            "give the worker --concurrency %d",
            threads, SLOTS.size, SLOTS.size + 1,
        )  # fmt: skip


def _sync_builds_queue() -> None:
    """On the consumer's loop: pause the builds queue while the slots are
    full, resume it (if we paused it) when one is free."""
    consumer = _state.consumer
    if consumer is None or consumer.task_consumer is None:
        return
    if SLOTS.full and not _state.paused:
        if consumer.task_consumer.consuming_from(BUILD_QUEUE):
            consumer.cancel_task_queue(BUILD_QUEUE)
            _state.paused = True
    elif not SLOTS.full and _state.paused:
        consumer.add_task_queue(BUILD_QUEUE)
        _state.paused = False


def _slots_changed() -> None:
    consumer = _state.consumer
    if consumer is not None:
        consumer.call_soon(_sync_builds_queue)


@contextmanager
def build_slot() -> Iterator[bool]:
    """Yields whether a slot was free; holds it for the block if so."""
    if not SLOTS.take():
        yield False
        return
    try:
        _slots_changed()
        yield True
    finally:
        SLOTS.give()
        _slots_changed()
