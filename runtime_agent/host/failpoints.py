"""Failpoints: named places in the agent where a fault test can freeze it.

A fault test must SIGKILL the agent at one exact moment (a container
half-started, a stop under way), not "about then". With
``PAAS_AGENT_FAILPOINTS`` naming points (comma-separated; ``POINT`` or
``POINT:SUBJECT``, e.g. ``launch.after:shop.v1.web.2`` to hit one container
only) the calling thread, on reaching such a point, writes its pid to
``$PAAS_AGENT_FAILPOINT_DIR/POINT`` (whole, by rename) and then blocks for
good; the test waits for the file and kills the process. Unset (always,
outside tests), a failpoint costs one dictionary lookup.

The same shape as the control plane's (``paas/core/failpoints.py``:
``PAAS_FAILPOINTS``, ``PAAS_FAILPOINT_DIR``), under the agent's own prefix:
the agent never imports the control plane. Read from the environment at each
call rather than through the agent's settings: it is a test hook, not a
setting an operator would use.

Blocking code only: from async code call it through ``asyncio.to_thread``,
so the event loop keeps serving while one operation is frozen.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("runtime_agent.failpoints")

ENV = "PAAS_AGENT_FAILPOINTS"
DIR_ENV = "PAAS_AGENT_FAILPOINT_DIR"


def armed() -> bool:
    """Whether any failpoint is set (async code asks before a thread hop)."""
    return bool(os.environ.get(ENV))


def _wanted(point: str, subject: str) -> bool:
    for entry in os.environ.get(ENV, "").split(","):
        name, _, only = entry.strip().partition(":")
        if name == point and (not only or only == subject):
            return True
    return False


def failpoint(point: str, subject: str = "") -> None:
    """Freeze here for good when the environment names this point (and subject)."""
    if not armed() or not _wanted(point, subject):
        return
    log.warning("failpoint %s reached (%s): blocking until killed", point, subject or "-")
    directory = os.environ.get(DIR_ENV)
    if directory:
        marker = Path(directory) / point
        partial = marker.with_name(f".{point}.{os.getpid()}")
        partial.write_text(str(os.getpid()))
        partial.rename(marker)
    threading.Event().wait()
