"""Netlink operations with pyroute2: bridge, named netns, veth pairs, addresses.

No ``ip`` subprocesses: each call opens a netlink socket (in the target netns
when needed), which takes about a millisecond. Every kernel refusal is turned
into :class:`NetworkError` naming the operation and the interface, so a log
line says what to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runtime_agent.host.errors import NetworkError
from runtime_agent.net import nsthread
from runtime_agent.wire import IdRange

NETNS_DIR = Path("/var/run/netns")
USERNS_DIR = Path("/var/run/paas-userns")
CONTAINER_IFNAME = "eth0"


def _refuse_event_loop_thread() -> None:
    # pyroute2's synchronous IPRoute drives its own asyncio loop and fails
    # with a puzzling "loop is already running" on an event loop's thread.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("network calls block: run them in a worker (asyncio.to_thread)")


def _open(ns: str | None) -> IPRoute:
    if ns is None:
        return IPRoute()
    try:
        sock = nsthread.netlink_socket(netns_path(ns))
    except OSError as exc:
        raise NetworkError(f"entering netns {ns} failed: {exc}") from exc
    return IPRoute(fileno=sock.detach())  # IPRoute owns the descriptor from here


@contextlib.contextmanager
def _netlink(what: str, ns: str | None = None) -> Iterator[IPRoute]:
    _refuse_event_loop_thread()
    try:
        with _open(ns) as ipr:
            yield ipr
    except NetlinkError as exc:
        where = f" in netns {ns}" if ns else ""
        raise NetworkError(f"{what}{where} failed: {exc}", errno=exc.code) from exc


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def link_exists(ifname: str) -> bool:
    with _netlink(f"looking up {ifname}") as ipr:
        return _index(ipr, ifname) is not None


def ensure_bridge(name: str, gateway: IPv4Interface) -> None:
    """Create the bridge if missing, give it the gateway address, bring it up."""
    with _netlink(f"setting up bridge {name}") as ipr:
        idx = _index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge")
            idx = _index(ipr, name)
        want = (str(gateway.ip), gateway.network.prefixlen)
        have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        for address, prefixlen in have - {want}:
            # From an earlier subnet: a second route would send traffic astray.
            ipr.addr("del", index=idx, address=address, prefixlen=prefixlen)
        if want not in have:
            ipr.addr("add", index=idx, address=want[0], prefixlen=want[1])
        # Its MAC set explicitly (to the one it has: no change now). Else a
        # bridge takes the lowest MAC of its ports and changes it when that
        # port goes, i.e. when a container is removed; every other
        # container's ARP entry for the gateway is then stale and their
        # replies go nowhere for seconds (requests through the router hang).
        (link,) = ipr.get_links(idx)
        ipr.link("set", index=idx, address=link.get_attr("IFLA_ADDRESS"), state="up")


def delete_link(ifname: str) -> bool:
    """Delete a link if present (for a veth, the peer goes with it)."""
    with _netlink(f"deleting {ifname}") as ipr:
        idx = _index(ipr, ifname)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:  # raced with another deleter: fine
                raise
        return True


def _delete_if_present(ipr: IPRoute, ifname: str) -> None:
    try:
        ipr.link("del", ifname=ifname)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:  # absent (or raced with another deleter): fine
            raise


def bridge_ports(bridge: str) -> list[str]:
    with _netlink(f"listing ports of {bridge}") as ipr:
        idx = _index(ipr, bridge)
        if idx is None:
            return []
        return [str(link.get("ifname")) for link in ipr.get_links() if link.get("master") == idx]


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def netns_alive(name: str) -> bool:
    """True if the named netns file is a mounted namespace (not a stale file)."""
    try:
        return _is_nsfs(netns_path(name))
    except FileNotFoundError:
        return False


def _is_nsfs(path: Path) -> bool:
    # A bind-mounted namespace shows as a different device than its directory.
    return path.stat().st_dev != path.parent.stat().st_dev


def userns_path(name: str) -> Path:
    """The user namespace that owns the netns ``name`` (when one does)."""
    return USERNS_DIR / name


def ensure_netns(name: str, id_range: IdRange | None = None) -> bool:
    """Create the named netns unless it exists; True if it was created now
    (then it is empty: nothing in it needs checking). With ``id_range`` the
    netns is owned by a user namespace of that range, kept at
    :func:`userns_path` (see nsthread.create_owned)."""
    path, user = netns_path(name), userns_path(name)
    for p in (path, user):
        if p.exists() and not _is_nsfs(p):
            p.unlink()  # left by a create that died before its bind mount
    if path.exists() and (id_range is None or user.exists()):
        return False
    if path.exists():  # made without its user namespace (an older agent): make it again
        remove_netns(name)
    try:
        if id_range is None:
            nsthread.create(path)
        else:
            nsthread.create_owned(path, user, id_range)
    except OSError as exc:
        raise NetworkError(f"creating netns {name} failed: {exc}") from exc
    return True


def remove_netns(name: str) -> bool:
    """Unmount and remove a named netns; it lives on while a process uses it."""
    path, user = netns_path(name), userns_path(name)
    if user.exists():
        with contextlib.suppress(FileNotFoundError):
            nsthread.remove(user)
    if not path.exists():
        return False
    try:
        nsthread.remove(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise NetworkError(f"removing netns {name} failed: {exc}") from exc
    return True


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def container_side_ready(ns: str, address: IPv4Interface, gateway: IPv4Address) -> bool:
    """True if eth0 in ``ns`` is up with ``address`` and a default route."""
    with _netlink("inspecting container side", ns) as ipr:
        idx = _index(ipr, CONTAINER_IFNAME)
        if idx is None:
            return False
        addrs = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        if (str(address.ip), address.network.prefixlen) not in addrs:
            return False
        routes = ipr.get_default_routes(family=2)
        return any(r.get("gateway") == str(gateway) for r in routes)


def plumb_veth(
    host_ifname: str,
    bridge: str,
    ns: str,
    address: IPv4Interface,
    gateway: IPv4Address,
    *,
    replace: bool = False,
) -> None:
    """Create a veth pair: host end on the bridge, other end as eth0 in ``ns``.
    ``replace`` first deletes a host link of that name (a half-made pair left
    by a crash), on the same netlink socket: cheaper than a separate call."""
    # The peer is born inside the netns (named eth0 there), so it never
    # occupies a name in the host namespace.
    peer: dict[str, Any] = {"ifname": CONTAINER_IFNAME, "net_ns_fd": ns}
    with _netlink(f"creating veth {host_ifname}") as ipr:
        if replace:
            _delete_if_present(ipr, host_ifname)
        ipr.link("add", ifname=host_ifname, kind="veth", peer=peer)
        idx = _index(ipr, host_ifname)
        master = _index(ipr, bridge)
        if idx is None or master is None:
            raise NetworkError(f"veth {host_ifname} or bridge {bridge} vanished while plumbing")
        ipr.link("set", index=idx, master=master, state="up")
        # Hairpin: a container calling its own published port gets the
        # DNATed packet back out of the port it came in on.
        ipr.brport("set", index=idx, mode=1)
    with _netlink("configuring container side", ns) as ipr:
        lo = _index(ipr, "lo")
        eth = _index(ipr, CONTAINER_IFNAME)
        if lo is None or eth is None:
            raise NetworkError(f"lo or {CONTAINER_IFNAME} missing in netns {ns}")
        ipr.link("set", index=lo, state="up")
        ipr.addr("add", index=eth, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=eth, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))
