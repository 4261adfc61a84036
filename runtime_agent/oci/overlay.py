"""Mount and unmount a container's root filesystem as an overlay.

Why syscalls through ctypes rather than the ``mount`` command:

- it sits on the container start path, whose budget is about one bare
  ``runc run`` (35 ms here); a ``mount`` process costs a few ms of it;
- the new mount API (fsopen/fsconfig, Linux 5.2+) returns the kernel's own
  error text ("overlay: failed to resolve 'x': -2"), which ``mount(8)``
  reduces to "wrong fs type, bad option..." and a hint to read dmesg;
- with ``lowerdir+`` (Linux 6.8+) each layer is its own parameter, so the
  one-page (4096 bytes) limit of mount(2)'s option string no longer caps
  the number of layers.

mount(2) with the classic option string remains the fallback on kernels
without the new API or without ``lowerdir+``.

Options: ``redirect_dir=off`` and ``metacopy=off`` are always set, so an
upper dir holds plain files and whiteouts only and can be packed as an OCI
layer as is (the builder does that), whatever the module defaults are.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from runtime_agent.host.errors import MountFailed
from runtime_agent.host.libc import get_errno, libc

log = logging.getLogger("runtime_agent.overlay")

_FSOPEN_CLOEXEC = 0x1
_FSCONFIG_SET_STRING = 1
_FSCONFIG_SET_FD = 5
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 0x1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100
_MNT_DETACH = 0x2
_UMOUNT_NOFOLLOW = 0x8
_PAGE = os.sysconf("SC_PAGE_SIZE")
_FIXED_OPTIONS = (("redirect_dir", "off"), ("metacopy", "off"))
# Characters the classic option string would need escaped; our own paths
# never contain them, so they are refused rather than escaped.
_FORBIDDEN = set(",:\\\n")


def mount(
    lowers: Sequence[Path],
    upper: Path | None,
    work: Path | None,
    target: Path,
) -> None:
    """Mount an overlay at ``target``: ``lowers`` topmost first (the image's
    last layer first), ``upper``/``work`` for the writable layer (both or
    neither: without them the mount is read-only)."""
    if not lowers:
        raise MountFailed("an overlay needs at least one lower dir", target=str(target))
    if (upper is None) != (work is None):
        raise MountFailed("upper and work dirs go together", target=str(target))
    paths = [*lowers, *([upper, work] if upper and work else []), target]
    for p in paths:
        if _FORBIDDEN & set(str(p)):
            raise MountFailed(f"path {str(p)!r} has a character overlay options cannot carry")
    started = time.monotonic()
    try:
        _mount_new_api(lowers, upper, work, target)
    except _NoNewApi as exc:
        log.debug("new mount API unavailable (%s); using mount(2)", exc)
        _mount_classic(lowers, upper, work, target)
    log.debug(
        "mounted overlay at %s (%d lowers) in %.1f ms",
        target,
        len(lowers),
        (time.monotonic() - started) * 1000,
    )


def unmount(target: Path, *, timeout_s: float = 5.0) -> None:
    """Unmount ``target``; a path that is not mounted is fine (idempotent).

    A busy mount (a process still has a file open in it) is retried until
    ``timeout_s``, then detached lazily so the agent never wedges on it.
    """
    deadline = time.monotonic() + timeout_s
    path = os.fsencode(target)
    while True:
        if libc.umount2(path, _UMOUNT_NOFOLLOW) == 0:
            return
        err = get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return  # not a mount point (any more)
        if err != errno.EBUSY:
            raise _failed("umount", target, err)
        if time.monotonic() > deadline:
            log.warning("%s still busy after %.1fs: detaching it lazily", target, timeout_s)
            if libc.umount2(path, _UMOUNT_NOFOLLOW | _MNT_DETACH) != 0:
                raise _failed("umount --lazy", target, get_errno())
            return
        time.sleep(0.05)


def mount_lower_fds(lower_fds: Sequence[int], upper: Path, work: Path, target: Path) -> None:
    """Like :func:`mount`, with lower layers given as open mounts (detached
    idmapped clones from :mod:`runtime_agent.oci.userns`): overlayfs takes
    each by fd (``FSCONFIG_SET_FD``, Linux 6.13+ for ``lowerdir+``). There
    is no fallback: mount(2)'s option string cannot name a detached mount."""
    if not lower_fds:
        raise MountFailed("an overlay needs at least one lower dir", target=str(target))
    for p in (upper, work, target):
        if _FORBIDDEN & set(str(p)):
            raise MountFailed(f"path {str(p)!r} has a character overlay options cannot carry")
    try:
        _mount_new_api(lower_fds, upper, work, target)
    except _NoNewApi as exc:
        raise MountFailed(
            f"idmapped layers need overlayfs layers by fd (Linux 6.13+): {exc}",
            target=str(target),
        ) from exc


def is_mounted(target: Path) -> bool:
    want = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        return any(_unescape(line.split()[4]) == want for line in f)


# ------------------------------------------------------------ the two APIs


class _NoNewApi(Exception):
    """The kernel or libc lacks fsopen/fsconfig or ``lowerdir+``."""


def _mount_new_api(
    lowers: Sequence[Path | int], upper: Path | None, work: Path | None, target: Path
) -> None:
    if not hasattr(libc, "fsopen"):
        raise _NoNewApi("libc has no fsopen")
    fs_fd = libc.fsopen(b"overlay", _FSOPEN_CLOEXEC)
    if fs_fd < 0:
        err = get_errno()
        if err in (errno.ENOSYS, errno.EPERM):
            raise _NoNewApi(os.strerror(err))
        raise _failed("fsopen overlay", target, err)
    try:
        for i, lower in enumerate(lowers):
            if not _set(fs_fd, "lowerdir+", lower):
                err = get_errno()
                if i == 0 and err == errno.EINVAL:
                    raise _NoNewApi("kernel has no lowerdir+ (needs Linux 6.8)")
                raise _failed(f"fsconfig lowerdir+={lower}", target, err, fs_fd)
        settings = [("upperdir", str(upper)), ("workdir", str(work))] if upper else []
        for key, value in [*settings, *_FIXED_OPTIONS]:
            if not _set(fs_fd, key, value):
                raise _failed(f"fsconfig {key}={value}", target, get_errno(), fs_fd)
        if libc.fsconfig(fs_fd, _FSCONFIG_CMD_CREATE, None, None, 0) != 0:
            raise _failed("fsconfig create", target, get_errno(), fs_fd)
        mnt_fd = libc.fsmount(fs_fd, _FSMOUNT_CLOEXEC, 0)
        if mnt_fd < 0:
            raise _failed("fsmount", target, get_errno(), fs_fd)
        try:
            rc = libc.move_mount(
                mnt_fd, b"", _AT_FDCWD, os.fsencode(target), _MOVE_MOUNT_F_EMPTY_PATH
            )
            if rc != 0:
                raise _failed("move_mount", target, get_errno())
        finally:
            os.close(mnt_fd)
    finally:
        os.close(fs_fd)


def _set(fs_fd: int, key: str, value: str | Path | int) -> bool:
    if isinstance(value, int):  # an open directory or detached mount
        rc = libc.fsconfig(fs_fd, _FSCONFIG_SET_FD, key.encode(), None, value)
    else:
        rc = libc.fsconfig(fs_fd, _FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0)
    return bool(rc == 0)


def _mount_classic(
    lowers: Sequence[Path], upper: Path | None, work: Path | None, target: Path
) -> None:
    options = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper and work:
        options += f",upperdir={upper},workdir={work}"
    options += "".join(f",{k}={v}" for k, v in _FIXED_OPTIONS)
    if len(options.encode()) >= _PAGE:
        raise MountFailed(
            f"overlay options for {len(lowers)} layers are {len(options)} bytes, over the"
            f" {_PAGE}-byte mount(2) limit (a kernel with lowerdir+, 6.8+, has no limit)",
            target=str(target),
        )
    rc = libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, options.encode())
    if rc != 0:
        raise _failed("mount -t overlay", target, get_errno(), options=options)


def _failed(
    what: str, target: Path, err: int, fs_fd: int | None = None, options: str = ""
) -> MountFailed:
    """A MountFailed naming the step, errno, and the kernel's own message
    when the new API recorded one."""
    kernel = _kernel_messages(fs_fd) if fs_fd is not None else ""
    message = f"{what} at {target} failed: {errno.errorcode.get(err, err)} {os.strerror(err)}"
    if kernel:
        message += f" (kernel: {kernel})"
    log.warning("%s", message)
    return MountFailed(
        message, target=str(target), errno=err, kernel=kernel, options=options or None
    )


def _kernel_messages(fs_fd: int) -> str:
    messages = []
    for _ in range(16):  # the kernel keeps a handful; bounded anyway
        try:
            data = os.read(fs_fd, 1024)
        except OSError:
            break
        if not data:
            break
        messages.append(data.decode(errors="replace").strip())
    return "; ".join(messages)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape") if "\\" in field else field
