"""The worker's threads split between long work and the control loops, so
that the control loops never wait behind builds or deploys.

The worker is one process whose pool threads (Procfile: ``--concurrency``
one more than ``PAAS_WORK_SLOTS``) take tasks from three queues
(CELERY_TASK_ROUTES in settings):

- ``control``: the beat's loops (heartbeat, observe, reconcile, the sweeps,
  metrics, log retention) and the router-sources push. Short, bounded by
  agent timeouts, and late they are wrong: a lost host is noticed, and its
  instances moved, only when the heartbeat runs. Never paused.
- ``builds``: builds.run. Minutes long.
- ``celery`` (the default queue, so a task nobody classified counts as long
  work and cannot take the control thread): deploys, lifecycle actions, app
  deletion, webhook deploys, housekeeping. A deploy can run a release
  command, wait for health checks or for an agent: minutes too.

At most ``PAAS_WORK_SLOTS`` tasks of the two long queues run at once, and at
most ``PAAS_BUILD_SLOTS`` of them builds; every thread above that is left
to the control queue. The worker stops *taking* from a long queue while its
slots are full, and takes from it again when one frees:

- A waiting task stays in Redis, in order, as a plain queued message: a
  worker that dies loses nothing and holds nothing (no prefetched message,
  no half-hour visibility timeout for it); a waiting build stays "queued"
  (no lease is taken) and cancelling it works as for any queued build.
- Weighed against the other design, threads that bounce a task they cannot
  start back to the queue with a countdown: the worker would then pull
  every queued task into its memory as a delayed message (each
  publish+ack every few seconds, the order lost, and all of them stranded
  for the visibility timeout if the worker is killed). Stopping the
  consumer costs nothing while work waits. Separate queues alone reserve
  nothing: one consumer's prefetch is shared, so long work could still
  fill every thread. A second worker process for control would (~80 MiB).
- Memory: one more idle pool thread per slot. bench/footprint.py, the
  worker's PSS with the builds queue alone (--concurrency 3) and with the
  work slots (--concurrency 4), main and this alternated (2026-12-05
  09:50-10:00): 82.8 / 82.4 MiB vs 83.1 / 82.5 MiB (noise; totals 239.2 /
  228.4 vs 230.1 / 227.2, moved by the registry's 9-19 MiB).

Pausing a queue is done on the consumer's own loop (``call_soon`` is
thread-safe), as one idempotent step that reads the slots when it runs, so
the order in which threads ask for it does not matter. A message that the
worker had already fetched before the pause (it prefetches one message per
thread) finds no slot and is rejected back to Redis at once, at the end of
its queue (rare: only when long tasks arrive together); by then its queue
is paused, so it waits there. Rejected, not retried: a retry would count against the task's own
retry budget (the deploy tasks retry on database outages).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task, signals
from celery.exceptions import Reject
from django.conf import settings

log = logging.getLogger(__name__)

CONTROL_QUEUE = "control"
BUILD_QUEUE = "builds"
WORK_QUEUE = "celery"

# The slots a task from each long queue holds while it runs.
NEEDS: dict[str, tuple[str, ...]] = {
    BUILD_QUEUE: ("work", "builds"),
    WORK_QUEUE: ("work",),
}


class Slots:
    """Counters of running tasks by kind, taken all or none."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = dict(sizes)
        self._busy = dict.fromkeys(sizes, 0)
        self._lock = threading.Lock()

    def take(self, names: Iterable[str]) -> bool:
        names = tuple(names)
        with self._lock:
            if self._full(names):
                return False
            for name in names:
                self._busy[name] += 1
            return True

    def give(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                self._busy[name] -= 1

    def full(self, names: Iterable[str]) -> bool:
        with self._lock:
            return self._full(tuple(names))

    def _full(self, names: tuple[str, ...]) -> bool:
        return any(self._busy[name] >= self.sizes[name] for name in names)


class _Consuming:
    """The worker's consumer (set once it is ready) and the queues this
    module paused: only a pause of ours is undone, so a worker started
    without a queue (``-Q``) never starts taking from it."""

    def __init__(self) -> None:
        self.consumer: Any = None
        self.paused: set[str] = set()


SLOTS = Slots({"work": settings.PAAS_WORK_SLOTS, "builds": settings.PAAS_BUILD_SLOTS})
_state = _Consuming()


@signals.worker_ready.connect
def _remember_consumer(sender: Any = None, **_: Any) -> None:
    _state.consumer = sender
    threads = getattr(getattr(sender, "controller", None), "concurrency", None)
    work = SLOTS.sizes["work"]
    if isinstance(threads, int) and threads <= work:
        log.warning(
            "the worker runs %d task(s) at once and PAAS_WORK_SLOTS is %d: builds and "
            "deploys can take every thread and hold up the control loops (heartbeat, "
            "reconcile); give the worker --concurrency %d",
            threads, work, work + 1,
        )  # fmt: skip


def _sync_queues() -> None:
    """On the consumer's loop: pause each long queue while its slots are
    full, resume it (if we paused it) when they are not."""
    consumer = _state.consumer
    if consumer is None or consumer.task_consumer is None:
        return
    for queue, names in NEEDS.items():
        full = SLOTS.full(names)
        if full and queue not in _state.paused:
            if consumer.task_consumer.consuming_from(queue):
                consumer.cancel_task_queue(queue)
                _state.paused.add(queue)
        elif not full and queue in _state.paused:
            consumer.add_task_queue(queue)
            _state.paused.discard(queue)


def _slots_changed() -> None:
    consumer = _state.consumer
    if consumer is not None:
        consumer.call_soon(_sync_queues)


@contextmanager
def work_slot(queue: str) -> Iterator[bool]:
    """Yields whether the slots a task from this queue needs were free (a
    queue of none, like control, always is); holds them for the block."""
    names = NEEDS.get(queue, ())
    if not names:
        yield True
        return
    if not SLOTS.take(names):
        yield False
        return
    try:
        _slots_changed()
        yield True
    finally:
        SLOTS.give(names)
        _slots_changed()


class SlottedTask(Task):
    """Every task of the app (CELERY task_cls): one taken from a long queue
    runs only in a free slot, else its message goes back to that queue. A
    task called in-process (no message) takes none."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        queue = (self.request.delivery_info or {}).get("routing_key") or ""
        with work_slot(queue) as free:
            if not free:
                # Back in Redis before the message is acked: nothing lost.
                raise Reject(f"no free {queue!r} slot", requeue=True)
            return super().__call__(*args, **kwargs)
