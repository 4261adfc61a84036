"""Named points where a test can stop a worker dead, exactly there.

The fault tests (issue 13) SIGKILL a real Celery worker at the worst
moments of a build or a deploy: mid-extract, mid-push, after the new
instances are healthy but before the router switch, after the switch but
before the old instances stop. Watching logs cannot hit those moments
reliably (each lasts milliseconds), and a mock of our own code would not
be a real kill. So the code says where the moments are::

    failpoint("deploy.before_switch")

which does nothing unless the process's environment names that point in
``PAAS_FAILPOINTS`` (comma-separated). A named point writes a marker file,
``$PAAS_FAILPOINT_DIR/<name>`` holding the process id, and then blocks for
ever: the test waits for the file, knows the worker is exactly there (and
which process it is), and kills it. Blocking, rather than exiting or
raising, keeps everything the worker holds (leases, locks, mounts, half-made
state) as a kill at that instant would find it.

Read from the environment at each call, not from Django settings: the build
engine that has points too is Django-free, and a process started without
the variable (every production one) pays one dictionary lookup per point.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_POINTS = "PAAS_FAILPOINTS"
ENV_DIR = "PAAS_FAILPOINT_DIR"


def failpoint(name: str) -> None:
    """Block for ever here if ``PAAS_FAILPOINTS`` names ``name`` (see above)."""
    wanted = os.environ.get(ENV_POINTS)
    if not wanted or name not in wanted.split(","):
        return
    directory = Path(os.environ.get(ENV_DIR) or "/tmp")
    marker = directory / name
    # Written whole under a temporary name: the test never reads half a pid.
    partial = directory / f".{name}.{os.getpid()}"
    partial.write_text(str(os.getpid()))
    os.rename(partial, marker)
    while True:  # until the test's SIGKILL
        time.sleep(3600)
