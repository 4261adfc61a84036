"""Task time limits for a Celery worker on the threads pool.

Why this exists: scripts/up's worker runs its two tasks at a time on threads
(``--pool threads``), not on two prefork children: one process instead of
three saves ~50 MiB idle (issue 13, the platform's footprint), and a build
spends its time waiting on runc, the registry or zlib, none of which holds
the GIL. But Celery enforces ``task_time_limit`` / ``task_soft_time_limit``
only in the prefork pool (a signal in the child, then killing it); on
threads they are silently ignored. The limits are a promise the rest of the
platform relies on: build housekeeping keeps a cache entry a running build
may still use for the hard limit plus a minute, and the broker's visibility
timeout is the limit plus a minute.

So a watchdog thread keeps the same promise here:

- past the soft limit, :class:`SoftTimeLimitExceeded` is raised in the
  task's thread (``PyThreadState_SetAsyncExc``: at its next Python bytecode,
  so a task waiting in Python on a subprocess or a socket with a timeout
  gets it within that timeout), exactly the exception prefork raises, so the
  task fails the same way;
- past the hard limit, a task still running is stuck in a C call the
  exception cannot reach, and a thread cannot be killed: the worker exits
  (code 70) after logging which task, as prefork would kill its child.
  Its message, acked late, is redelivered later and finds its work failed or
  done (tasks are idempotent); under scripts/up the supervisor starts the
  worker again (scripts/run_procfile.py: backoff, crash-loop limit).

Only tasks running off the main thread are watched: in the solo pool (the
tests' workers) and in prefork children tasks run on the main thread, and
prefork enforces the limits itself.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded

log = logging.getLogger(__name__)
CHECK_EVERY_S = 0.5
HARD_LIMIT_EXIT_CODE = 70  # EX_SOFTWARE


@dataclass
class Running:
    task: str
    task_id: str
    soft_at: float | None
    hard_at: float | None
    soft_sent: bool = False


class Watchdog:
    """The tasks running on pool threads, by thread id, and the thread that
    enforces their limits."""

    def __init__(self) -> None:
        self.running: dict[int, Running] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def task_started(self, task: Any, task_id: str) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        hard, soft = self._limits(task)
        now = time.monotonic()
        entry = Running(
            task=task.name,
            task_id=task_id,
            soft_at=now + soft if soft else None,
            hard_at=now + hard if hard else None,
        )
        with self.lock:
            self.running[threading.get_ident()] = entry
            if self.thread is None:
                self.thread = threading.Thread(target=self._watch, name="time-limits", daemon=True)
                self.thread.start()

    def task_ended(self) -> None:
        ident = threading.get_ident()
        with self.lock:
            entry = self.running.pop(ident, None)
            if entry is not None and entry.soft_sent:
                # Ended before the exception reached it: it must not hit
                # the next task this thread runs.
                _raise_in_thread(ident, None)

    def _limits(self, task: Any) -> tuple[float | None, float | None]:
        """(hard, soft) seconds: the message's, else the task's, else the app's."""
        hard, soft = task.request.timelimit or (None, None)
        hard = hard or task.time_limit or task.app.conf.task_time_limit
        soft = soft or task.soft_time_limit or task.app.conf.task_soft_time_limit
        return hard, soft

    def _watch(self) -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        # Under the lock: a task that ends meanwhile is either still listed
        # (and clears what was sent when it ends) or gone.
        with self.lock:
            for ident, entry in self.running.items():
                if entry.hard_at is not None and now >= entry.hard_at:
                    self._hard_limit(entry)
                elif entry.soft_at is not None and now >= entry.soft_at and not entry.soft_sent:
                    entry.soft_sent = True
                    log.warning("Soft time limit exceeded for %s[%s]", entry.task, entry.task_id)
                    _raise_in_thread(ident, SoftTimeLimitExceeded)

    def _hard_limit(self, entry: Running) -> None:
        log.critical(
            "Hard time limit exceeded for %s[%s]: a pool thread cannot be killed, "
            "so the worker exits (its task is redelivered later and finds its work "
            "failed or done)",
            entry.task,
            entry.task_id,
        )
        logging.shutdown()
        os._exit(HARD_LIMIT_EXIT_CODE)


def _raise_in_thread(ident: int, exc: type[BaseException] | None) -> None:
    """Have thread ``ident`` raise ``exc`` at its next bytecode (None: clear)."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_async_exc(ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc))


_installed: list[Watchdog] = []


def install() -> Watchdog:
    """Watch every task this process runs on a pool thread (see above); once
    per process, whatever the number of Celery apps."""
    if _installed:
        return _installed[0]
    watchdog = Watchdog()
    _installed.append(watchdog)

    def on_prerun(sender: Any = None, task_id: str = "", **_: Any) -> None:
        watchdog.task_started(sender, task_id)

    def on_postrun(**_: Any) -> None:
        watchdog.task_ended()

    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    return watchdog
