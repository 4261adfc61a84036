from __future__ import annotations

import gc
import os
from typing import Any

from celery import Celery, signals

from paas.core import thread_time_limits

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paas.settings")

# Every task runs through paas.core.work_slots: builds and deploys only in
# a free slot, so that a thread is always left for the control loops.
app = Celery("paas", task_cls="paas.core.work_slots:SlottedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_before_create_process.connect
def freeze_before_fork(**_: Any) -> None:
    """A prefork child shares the worker's pages until it writes to them, and
    Python's cyclic collector writes to every object it scans: after a few
    tasks a child had copied most of the worker's heap (~68 MiB each, idle).
    Frozen objects (all the worker made before this fork: Django, the task
    modules) are never scanned again, so their pages stay shared."""
    gc.collect()
    gc.freeze()


# The worker runs tasks on threads (Procfile): keep their time limits there.
thread_time_limits.install()
