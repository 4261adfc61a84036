"""User namespaces for containers: container root is an unprivileged host uid.

Every container runs in a user namespace whose ids 0..65535 map to one
range of host ids (``wire.IdRange``), one range per team. runc makes the
namespace from the spec's ``uidMappings``/``gidMappings`` (:func:`spec_fields`).

The image's files must then appear owned by root inside although the
layers on disk are owned by host root. Two ways, measured on this project's
machines (2 cores, kernel 6.18):

- shift ownership once per range when a layer is unpacked: a copy of every
  layer per team, and for the Debian stack alone (40,236 entries) a
  ``cp -a`` of 21 s plus 428 ms of ``lchown``, per team, and as much disk
  again per team; chown also clears setuid bits, which would have to be
  put back;
- idmapped mounts (Linux 5.12+): :func:`idmapped_tree` clones a layer
  directory as a detached mount whose ids are shifted through the range's
  user namespace: 0.08 ms per layer, no copy, no disk, every team sharing
  one unpacked layer. overlayfs takes the clones as lower layers by file
  descriptor (``FSCONFIG_SET_FD`` with ``lowerdir+``), so they never
  appear in any directory and vanish with the overlay.

So: idmapped mounts. runc 1.1 cannot make them itself, so the agent does,
before ``runc run``. The writable upper layer is not idmapped: the
container writes there with its real (shifted) host ids, and copy-up of a
lower file takes the shifted owner seen through the idmapped lower.

A mount's idmap is taken from a user namespace fd. :func:`userns_fd` makes
one per range (a short-lived ``unshare --user`` child whose maps we write;
its /proc/PID/ns/user fd keeps the namespace alive after it exits) and
keeps it for the life of the process: about 12 ms, once per team.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtime_agent.host import cmd
from runtime_agent.host.errors import InvalidRequest, MountFailed
from runtime_agent.host.libc import get_errno, libc
from runtime_agent.wire import ID_RANGE_SIZE, IdRange

log = logging.getLogger("runtime_agent.userns")

_SYS_OPEN_TREE = 428
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_IDMAP = 0x100000
_NS_WAIT_S = 5.0

_fds: dict[int, int] = {}
_fds_lock = threading.Lock()


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def check_range(id_range: IdRange, *, min_id: int) -> None:
    """The agent's policy on ranges: never below ``min_id`` (host users and
    system ids live there), aligned, and within 32 bits."""
    if id_range.size != ID_RANGE_SIZE or id_range.host_id % ID_RANGE_SIZE:
        raise InvalidRequest(
            f"id_range.host_id must be a multiple of {ID_RANGE_SIZE}", field="id_range.host_id"
        )
    if id_range.host_id < min_id or id_range.host_id + id_range.size > 2**32 - 1:
        raise InvalidRequest(
            f"id_range.host_id must be at least {min_id} and leave a whole range below 2^32",
            field="id_range.host_id",
        )


def spec_fields(id_range: IdRange) -> dict[str, Any]:
    """The ``linux`` keys of an OCI spec that put the container in the range
    (runc also wants them when it joins an existing user namespace)."""
    mapping = [{"containerID": 0, "hostID": id_range.host_id, "size": id_range.size}]
    return {"uidMappings": mapping, "gidMappings": list(mapping)}


def userns_fd(id_range: IdRange) -> int:
    """An fd of a user namespace mapping 0.. to ``id_range`` (cached per range,
    never closed: the process keeps one per team it has served)."""
    with _fds_lock:
        fd = _fds.get(id_range.host_id)
        if fd is None:
            fd = _fds[id_range.host_id] = _make_userns(id_range)
        return fd


def _make_userns(id_range: IdRange) -> int:
    with unshared(id_range) as pid:
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)


@contextlib.contextmanager
def unshared(id_range: IdRange, *, net: bool = False) -> Iterator[int]:
    """The pid of a child in a new user namespace mapped to ``id_range``
    (and with ``net``, in a new network namespace that user namespace
    owns), alive for the ``with`` block: open or bind its /proc/PID/ns/*
    files to keep the namespaces. A process, not a thread: a multithreaded
    process cannot enter a user namespace."""
    argv = ["unshare", "--user", *(["--net"] if net else []), "--", "cat"]
    child = cmd.popen(argv, stdin=subprocess.PIPE, stdout=None)
    try:
        _wait_unshared(child.pid)
        line = f"0 {id_range.host_id} {id_range.size}\n"
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{child.pid}/{name}").write_text(line)
        yield child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()  # cat ends; what was opened or bound keeps the namespaces
        # Reaped aside: its exit is no business of a container's start path.
        threading.Thread(target=child.wait, name="unshare-reaper", daemon=True).start()


def _wait_unshared(pid: int) -> None:
    """Until ``pid`` has left our user namespace (unshare runs, then execs cat)."""
    ours = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + _NS_WAIT_S
    while os.readlink(f"/proc/{pid}/ns/user") == ours:
        if time.monotonic() > deadline:
            raise MountFailed(f"unshare --user (pid {pid}) did not make a user namespace")
        time.sleep(0.0005)


# --- spare (user, net) namespace pairs -----------------------------------------

_SPARES = 2  # per range: enough for a deploy's burst, few fds held
_spares: dict[int, list[tuple[int, int]]] = {}
_spares_lock = threading.Lock()
_refilling: set[int] = set()


def owned_netns_pair(id_range: IdRange) -> tuple[int, int]:
    """Fds of a user namespace mapped to ``id_range`` and of a network
    namespace it owns; the caller closes both.

    Making one takes a process (``unshare``), 3-20 ms on this project's
    loaded 2-core hosts: on a container's start path that is a sixth of
    what runc itself takes. So a pair is taken from a few made ahead for
    the range, and the spares are made again off the start path (a
    low-priority thread). The first container of a range waits for its own.
    """
    with _spares_lock:
        spare = _spares.get(id_range.host_id)
        pair = spare.pop() if spare else None
    _refill_later(id_range)
    return pair if pair is not None else _make_pair(id_range)


def _make_pair(id_range: IdRange) -> tuple[int, int]:
    with unshared(id_range, net=True) as pid:
        user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return user, os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(user)
            raise


def _refill_later(id_range: IdRange) -> None:
    with _spares_lock:
        if id_range.host_id in _refilling:
            return
        _refilling.add(id_range.host_id)
    threading.Thread(target=_refill, args=(id_range,), name="userns-spares", daemon=True).start()


def _refill(id_range: IdRange) -> None:
    # Nice this thread (and the unshare it starts): containers starting now
    # come first for the CPU.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    try:
        while len(_spares.get(id_range.host_id, [])) < _SPARES:
            pair = _make_pair(id_range)
            with _spares_lock:
                _spares.setdefault(id_range.host_id, []).append(pair)
    except Exception:
        log.exception("making spare namespaces for range %d failed", id_range.host_id)
    finally:
        with _spares_lock:
            _refilling.discard(id_range.host_id)


def idmapped_tree(path: Path, id_range: IdRange | None) -> int:
    """A detached, read-only clone of the mount at ``path`` with ids shifted
    into ``id_range``: an fd for overlayfs' ``lowerdir+``. The caller closes it.
    With ``id_range`` None the ids stay as on disk: a tree a process of the
    range wrote (a build step's layer) is already owned by the range's ids."""
    fd = libc.syscall(
        _SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(path), _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC
    )
    if fd < 0:
        raise _failed("open_tree", path)
    attr = (
        _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
        if id_range is None
        else _MountAttr(_MOUNT_ATTR_IDMAP | _MOUNT_ATTR_RDONLY, 0, 0, userns_fd(id_range))
    )
    rc = libc.syscall(
        _SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    if rc != 0:
        error = _failed("mount_setattr(MOUNT_ATTR_IDMAP)", path)
        os.close(fd)
        raise error
    return int(fd)


def _failed(what: str, path: Path) -> MountFailed:
    err = get_errno()
    return MountFailed(f"{what} of {path} failed: {os.strerror(err)}", target=str(path), errno=err)
