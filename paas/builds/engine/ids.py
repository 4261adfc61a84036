"""Owners of layer trees on disk, in or out of a team's id range.

A layer tree is in one of two views (see steps.py): the container's (root
is 0: base layers and COPY/ADD trees, which are mounted idmapped into the
range) or the range's (root is the range's first host id: what a RUN step
wrote, mounted as it is). The host writes a few entries into trees itself
(WORKDIR parents before a step, COPY destinations' parents copying the
owner of a directory below); :func:`shift_tree` puts those into the view
of the tree they land in. No link is ever followed: ``os.fwalk`` without
following, ``lchown`` by name relative to the directory fd.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runtime_agent.host import safepath
from runtime_agent.wire import IdRange


def shift_tree(root_fd: int, id_range: IdRange, *, into_range: bool) -> None:
    """``into_range``: owners in the container's view (below the range's
    size) move into the range; else owners in the range move back to the
    container's view. Owners already in the target view stay."""

    def shifted(owner: int) -> int:
        if into_range and owner < id_range.size:
            return owner + id_range.host_id
        if not into_range and 0 <= owner - id_range.host_id < id_range.size:
            return owner - id_range.host_id
        return owner

    def fix(name: str, dir_fd: int) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        uid, gid = shifted(st.st_uid), shifted(st.st_gid)
        if (uid, gid) == (st.st_uid, st.st_gid):
            return
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            # chown cleared them; the owner changed view, not identity.
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)

    fix(".", root_fd)
    for _root, dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        for name in (*dirs, *files):
            fix(name, dir_fd)


def own_tree(root: Path, id_range: IdRange) -> None:
    """Give the range's root a tree a step writes (its team's download
    cache). A cache not owned by the range yet was written while steps ran
    as host root: it is emptied rather than chowned (a step then could have
    left a hard link to any host file in it, and a chown would give that
    file away). It is only a cache."""
    st = os.stat(root, follow_symlinks=False)
    if (st.st_uid, st.st_gid) == (id_range.host_id, id_range.host_id):
        return
    safepath.remove_tree(root)
    root.mkdir(mode=0o755)
    os.chown(root, id_range.host_id, id_range.host_id)
