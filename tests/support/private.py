"""What another local user could get at in a tree the platform wrote: the
walk behind the "host files are private" tests."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path


def _trusted() -> tuple[set[int], set[int]]:
    """Root and, where scripts/up made it, the service user."""
    uids, gids = {0}, {0}
    try:
        uids.add(pwd.getpwnam("paas").pw_uid)
        gids.add(grp.getgrnam("paas").gr_gid)
    except KeyError:
        pass
    return uids, gids


def _granted(st: os.stat_result, uids: set[int], gids: set[int]) -> int:
    """The rwx bits some other local user may get: the other bits, and the
    owner's or group's when that owner or group is not a trusted one."""
    mode = st.st_mode
    bits = mode & 0o7
    if st.st_gid not in gids:
        bits |= (mode >> 3) & 0o7
    if st.st_uid not in uids:
        bits |= (mode >> 6) & 0o7
    return bits


def exposed(root: Path) -> list[str]:
    """What another user reaches under ``root``, walking only into the
    directories such a user may enter (so a tree's own modes count only
    where it is reachable at all)."""
    uids, gids = _trusted()
    found, todo = [], [root]
    while todo:
        path = todo.pop()
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        bits = _granted(st, uids, gids)
        special = stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
        setid = stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID)
        if bits & 0o6 or special or (setid and bits & 0o1):
            found.append(f"{path} {stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}")
        if stat.S_ISDIR(st.st_mode) and bits & 0o1:
            todo.extend(path.iterdir())
    return found
