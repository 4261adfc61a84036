"""The platform's own directories are private to root and its service user.

What the platform keeps (database, uploads, build trees, caches, registry
files, the agent's layer store and token) lives under a few roots made here
with explicit modes, so no other local user can enter them, whatever the
umask of the process that made them and whatever the modes of the tenants'
trees inside (those keep the modes their image gives them, which containers
need). Part of the host toolkit: the agent and the control plane both use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """``path`` as a directory other users get no more of than ``mode`` gives
    them (nothing with the default 0o700; only passage with 0o751). Missing
    parents are made too; an existing directory loses what others had beyond
    that (its owner's and group's bits stand)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    current = stat.S_IMODE(path.stat().st_mode)
    too_much = current & 0o007 & ~mode
    if too_much:
        os.chmod(path, current & ~too_much)
    return path
