"""The C library, loaded once, for the few syscalls Python's ``os`` lacks
(mount API, setns, unshare, syncfs, fallocate hole punching, prctl).

One ``CDLL`` with ``use_errno=True`` for everyone, so every caller reads
``errno`` the same way (:func:`get_errno`, thread-local like errno itself).
"""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
# fallocate's offset and length are 64-bit: without argtypes ctypes would
# pass Python ints as C ints and truncate them.
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]

PR_SET_CHILD_SUBREAPER = 36
get_errno = ctypes.get_errno


def check(ret: int, what: str) -> None:
    """Raise ``OSError`` naming ``what`` when a libc call returned non-zero."""
    if ret != 0:
        err = get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def set_child_subreaper(enabled: bool = True) -> None:
    """Become (or stop being) the reaper of our orphaned descendants."""
    check(
        libc.prctl(PR_SET_CHILD_SUBREAPER, int(enabled), 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)"
    )
