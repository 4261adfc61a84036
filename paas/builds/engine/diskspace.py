"""Telling a full disk from a failing step.

A step that runs out of disk fails like any other command (pip or dd exits
1), and an ENOSPC in the builder's own file work surfaces as an OSError
from deep inside; both would read as the tenant's fault or an internal
error. Checked while the failed step's files are still on disk (the build
directory is removed afterwards, which frees the space again)."""

from __future__ import annotations

import os
from pathlib import Path

from runtime_agent.host.errors import DISK_ERRNOS

# Below this much space for unprivileged writers the build directory counts
# as full: the step that just failed most likely failed for want of it.
LOW_SPACE_BYTES = 4 * 1024 * 1024
__all__ = ["DISK_ERRNOS", "LOW_SPACE_BYTES", "out_of_space"]


def out_of_space(path: Path) -> str | None:
    """A sentence for the build log if ``path``'s filesystem is (nearly)
    full, else None."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if free >= LOW_SPACE_BYTES:
        return None
    total = st.f_blocks * st.f_frsize
    return (
        f"out of disk space on the build host ({free // 1024} KiB of {total // (1024 * 1024)} MiB "
        f"free where builds run, {path}); the operator must free space or give "
        "PAAS_BUILD_DIR a larger disk, then retry the build"
    )
