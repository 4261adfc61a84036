"""Failpoints: named places in the agent where a fault test can freeze it.

A fault test must SIGKILL the agent at one exact moment (a container
half-started, a stop under way), not "about then". With
``PAAS_AGENT_FAILPOINT=POINT`` (or ``POINT:SUBJECT``, e.g.
``launch.after:shop.v1.web.2`` to hit one container only) the calling
thread, on reaching that point, writes a line to the file named by
``PAAS_AGENT_FAILPOINT_MARKER`` and then blocks for good; the test waits for
the file and kills the process. Unset (always, outside tests), a failpoint
costs one dictionary lookup.

Read from the environment at each call rather than through the agent's
settings: it is a test hook, not a setting an operator would use, and the
host toolkit must stay importable on its own. The control plane has its own
(``paas/core/failpoints.py``); the agent never imports the control plane.

Blocking code only: from async code call it through ``asyncio.to_thread``,
so the event loop keeps serving while one operation is frozen.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("runtime_agent.failpoints")

ENV = "PAAS_AGENT_FAILPOINT"
MARKER_ENV = "PAAS_AGENT_FAILPOINT_MARKER"


def armed() -> bool:
    """Whether any failpoint is set (async code asks before a thread hop)."""
    return bool(os.environ.get(ENV))


def failpoint(point: str, subject: str = "") -> None:
    """Freeze here for good when the environment names this point (and subject)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, only = wanted.partition(":")
    if name != point or (only and only != subject):
        return
    log.warning("failpoint %s reached (%s): blocking until killed", point, subject or "-")
    marker = os.environ.get(MARKER_ENV)
    if marker:
        with open(marker, "a") as f:
            f.write(f"{point} {subject}\n")
    threading.Event().wait()
