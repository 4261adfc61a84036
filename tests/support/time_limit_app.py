"""A Celery app of one task for tests/test_thread_time_limits.py: a real
worker on the threads pool runs it against a real Redis (REDIS_URL), with the
platform's time-limit watchdog (paas/core/thread_time_limits.py) installed as
paas/celery.py installs it. The task stands for a build stuck in Python (it
notices the soft limit) or in a C call (it ignores it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from paas.core import thread_time_limits

app = Celery("time_limits", broker=os.environ["REDIS_URL"])
app.conf.update(task_soft_time_limit=1, task_time_limit=4, worker_hijack_root_logger=False)
thread_time_limits.install()


@app.task(name="limits.spin")
def spin(marker: str, ignore_soft: bool) -> None:
    """Loop until the soft limit; write what happened to ``marker``."""
    path = Path(marker)
    path.write_text("started")
    while True:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            path.write_text("soft limit")
            if not ignore_soft:
                raise
