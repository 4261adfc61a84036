"""Create and enter named network namespaces from a short-lived thread.

pyroute2's own helpers fork a child process for every netns created and for
every netlink socket opened inside one (about 11 ms each), which would make
the network a third of a container's start time. A network namespace is a
per-thread property on Linux (unshare/setns with CLONE_NEWNET act on the
calling thread only), so instead a throwaway thread enters the namespace,
does the one thing that must happen there (create the namespace, or open a
netlink socket, which stays bound to it), and ends. Because the thread dies,
no other code ever runs in the wrong namespace.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runtime_agent.host.libc import check, libc
from runtime_agent.oci import userns
from runtime_agent.wire import IdRange

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
NETLINK_ROUTE = 0

_shared_dirs: set[Path] = set()
_shared_lock = threading.Lock()


def _mount(source: str, target: str, flags: int) -> None:
    ret = libc.mount(source.encode(), target.encode(), b"none", flags, None)
    check(ret, f"mount {source} on {target}")


def _make_shared(directory: Path) -> None:
    """Make the netns directory a shared mount, as iproute2 does, so the
    namespace mounts made in it show up in mount namespaces created later
    (runc's, ``ip netns exec``'s) and can be unmounted from here."""
    with _shared_lock:
        if directory in _shared_dirs:
            return
        directory.mkdir(parents=True, exist_ok=True)
        try:
            _mount("", str(directory), MS_SHARED | MS_REC)
        except OSError:  # not a mount point yet: bind it onto itself first
            _mount(str(directory), str(directory), MS_BIND | MS_REC)
            _mount("", str(directory), MS_SHARED | MS_REC)
        _shared_dirs.add(directory)


def _on_fresh_thread(enter: Callable[[], None], work: Callable[[], T]) -> T:
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            enter()
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="netns-worker")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def create(path: Path) -> None:
    """Create a network namespace kept alive by a bind mount at ``path``."""
    _make_shared(path.parent)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))

    def enter() -> None:
        check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")

    def bind() -> None:
        _mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(path), MS_BIND)

    try:
        _on_fresh_thread(enter, bind)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def create_owned(path: Path, user_path: Path, id_range: IdRange) -> None:
    """Create a network namespace owned by a new user namespace mapped to
    ``id_range``, each kept alive by a bind mount (``path``, ``user_path``).

    The container joins both (runc joins the user namespace first, then the
    network namespace): runc 1.1's ``exec`` joins in that order too, and
    the kernel lets a process in a user namespace enter only a network
    namespace that namespace owns; the container's sysfs mount needs the
    same ownership. See runtime_agent/oci/rootfs.py.
    """
    _make_shared(path.parent)
    user_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    made: list[Path] = []
    fds = userns.owned_netns_pair(id_range)
    try:
        for fd, target in zip(fds, (user_path, path), strict=True):
            os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
            made.append(target)
            _mount(f"/proc/self/fd/{fd}", str(target), MS_BIND)
    except BaseException:
        for target in made:
            libc.umount2(str(target).encode(), MNT_DETACH)
            target.unlink(missing_ok=True)
        raise
    finally:
        for fd in fds:
            os.close(fd)


def remove(path: Path) -> None:
    """Unmount and unlink; the namespace itself lives on while a process uses it."""
    libc.umount2(str(path).encode(), MNT_DETACH)  # fails harmlessly if not mounted
    path.unlink()


def netlink_socket(path: Path) -> socket.socket:
    """An rtnetlink socket that talks to the namespace at ``path``."""
    return run_in(path, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE))


def run_in(path: Path, work: Callable[[], T]) -> T:
    """Run ``work`` on a throwaway thread inside the namespace at ``path``."""

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            check(libc.setns(fd, CLONE_NEWNET), f"setns({path})")
        finally:
            os.close(fd)

    return _on_fresh_thread(enter, work)
