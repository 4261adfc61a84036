"""inotify: be told that a file was written instead of polling it.

One non-blocking inotify fd for many watches; the caller puts :meth:`fileno`
in its event loop and calls :meth:`take` when it is readable. Only the
watch descriptors that saw an event come back (and whether the kernel's
queue overflowed, after which any watched file may have changed): what
changed is for the caller to read, so an event dropped or merged by the
kernel costs nothing but a wake-up.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path

from runtime_agent.host.libc import get_errno, libc

IN_MODIFY = 0x00000002
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000  # the watch is gone (file removed, or rm_watch)
IN_DONT_FOLLOW = 0x02000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


def _raise(what: str) -> None:
    code = get_errno()
    raise OSError(code, f"{what}: {os.strerror(code)}")


class Inotify:
    """Watches for writes to files (``IN_MODIFY``), links never followed."""

    def __init__(self) -> None:
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            _raise("inotify_init1")
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def watch(self, path: Path) -> int:
        """Watch ``path`` for writes; returns its watch descriptor."""
        wd = libc.inotify_add_watch(self._fd, os.fsencode(path), IN_MODIFY | IN_DONT_FOLLOW)
        if wd < 0:
            _raise(f"inotify_add_watch {path}")
        return int(wd)

    def unwatch(self, wd: int) -> None:
        """Stop watching; a watch the kernel already dropped is no error."""
        if libc.inotify_rm_watch(self._fd, wd) != 0 and get_errno() != errno.EINVAL:
            _raise("inotify_rm_watch")

    def take(self) -> tuple[set[int], bool]:
        """Every pending event: (watch descriptors written to, queue overflowed)."""
        written: set[int] = set()
        overflow = False
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return written, overflow
            fields = memoryview(data).cast("i")  # wd, mask, cookie, len; then len bytes of name
            if len(data) % _EVENT.size == 0 and not any(fields[3::4]):
                # Watches on files carry no names: every event is 16 bytes, and
                # a flood's thousands of them are taken without a Python loop
                # (the loop was a tenth of the agent's CPU under a flood).
                wds = set(fields[0::4])
                overflow = overflow or -1 in wds  # IN_Q_OVERFLOW comes with wd -1
                written |= wds
                continue
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                elif mask & IN_MODIFY:
                    written.add(wd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
