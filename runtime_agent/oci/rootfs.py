"""A container's root filesystem in a user namespace, with a capped writable layer.

Per container directory (``cdir``)::

    rw/        a tmpfs of the writable-layer size: upper/ (owned by the
               range's root) and work/ (overlay's scratch)
    rootfs/    the overlay: the image's layers, idmapped into the team's
               range (see :mod:`runtime_agent.oci.userns`), under rw/upper

Why a tmpfs for the writable layer: its ``size=`` is a hard cap that the
kernel enforces on every write, so a write past it fails with ENOSPC inside
the container (no periodic ``du`` that kills afterwards). It costs one
mount (~0.1 ms) on the start path, where a loop-mounted filesystem would
cost an ``mkfs`` and a project quota would need the agent's disk to be
XFS/ext4 with quotas on. The price, documented in the README: the layer
lives in memory (the kernel charges its pages to the container's memory
cgroup, whose limit is therefore the app's memory plus the layer's size:
containers/isolation.py) and does not survive a host reboot, like the
container's processes (an app's durable data belongs elsewhere). Measured
here: mkfs.ext4 + a loop mount per container cost ~50 ms of a start that
bare runc does in ~35 ms; XFS project quotas are not built into this
kernel, and ext4's answer EDQUOT, not ENOSPC.

The network namespace is owned by the container's user namespace
(runtime_agent/net/nsthread.py ``create_owned``; runc joins both by path)
rather than given a read-only bind of /sys: runc 1.1's ``exec`` joins the
container's user namespace first and could then never enter a network
namespace the host's user namespace owns, so ``exec`` would fail
altogether; with the ownership right, runc's own sysfs mount works too.
Tenant root still holds no CAP_NET_ADMIN there (not in its bounding set,
and no_new_privs), so it cannot change its addresses, routes or rules.

Directory permissions: runc's init resolves the rootfs and bind sources as
container root, i.e. as the range's first host id, so the path to them must
be traversable by it: the agent root and its containers directory are 0711
(no listing), each container directory 0710 with the range's root group.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from runtime_agent.host.errors import HostError, MountFailed
from runtime_agent.host.libc import get_errno, libc
from runtime_agent.oci import overlay, userns
from runtime_agent.wire import IdRange

log = logging.getLogger("runtime_agent.rootfs")

_MS_NOSUID, _MS_NODEV = 0x2, 0x4
MOUNTS = ("rootfs", "rw")  # unmount order: the overlay uses rw/


def open_for_ranges(agent_root: Path, containers_dir: Path) -> None:
    """Make the agent's root and containers dir traversable (0711) by any
    range's root, every other directory in the root private (0700), and
    refuse to go on if a parent directory is not traversable."""
    for d in (agent_root, containers_dir):
        d.mkdir(parents=True, exist_ok=True, mode=0o711)
        os.chmod(d, 0o711)
    # Everything else under the root (image layers above all: tenants' code
    # and baked secrets) stays root's alone now that the root is traversable.
    for entry in os.scandir(agent_root):
        if entry.is_dir(follow_symlinks=False) and entry.path != str(containers_dir):
            os.chmod(entry.path, 0o700)
    for parent in agent_root.resolve().parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise HostError(
                f"{parent} is not searchable by other users (mode o+x): containers run as "
                f"unprivileged host ids and runc resolves their rootfs under {agent_root} as them"
            )


def mount(cdir: Path, lowers: Sequence[Path], id_range: IdRange, writable_bytes: int) -> None:
    """Mount (idempotently) the rw tmpfs and the idmapped overlay under ``cdir``."""
    cdir.mkdir(parents=True, exist_ok=True, mode=0o710)
    os.chown(cdir, 0, id_range.host_id)
    os.chmod(cdir, 0o710)
    rw, rootfs = cdir / "rw", cdir / "rootfs"
    for d in (rw, rootfs):
        d.mkdir(exist_ok=True)
    if not os.path.ismount(rw):
        _mount_tmpfs(rw, writable_bytes)
    for sub, owner, mode in (("upper", id_range.host_id, 0o755), ("work", 0, 0o700)):
        (rw / sub).mkdir(exist_ok=True)
        os.chown(rw / sub, owner, owner)
        os.chmod(rw / sub, mode)
    if os.path.ismount(rootfs):
        return
    fds: list[int] = []
    try:
        for lower in lowers:
            fds.append(userns.idmapped_tree(lower, id_range))
        overlay.mount_lower_fds(fds, rw / "upper", rw / "work", rootfs)
    finally:
        for fd in fds:
            os.close(fd)  # the overlay holds its own references


def unmount(cdir: Path) -> None:
    """Undo :func:`mount`; each step idempotent."""
    for name in MOUNTS:
        if os.path.ismount(cdir / name):
            overlay.unmount(cdir / name)


def any_mounted(cdir: Path) -> bool:
    return any(os.path.ismount(cdir / name) for name in MOUNTS)


def _mount_tmpfs(target: Path, size: int) -> None:
    options = f"size={size},mode=0700,uid=0,gid=0".encode()
    if libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", _MS_NOSUID | _MS_NODEV, options) != 0:
        err = get_errno()
        raise MountFailed(f"mount tmpfs at {target}: {os.strerror(err)}", target=str(target))
