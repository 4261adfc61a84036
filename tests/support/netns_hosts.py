"""Test "machines" on one kernel: each host is a network namespace made by
the test, plugged into a LAN that is a bridge in the root namespace.

    root namespace                         host netns (one per test host)
    ─────────────────────────────          ──────────────────────────────
    bridge LAN  10.a.b.1/24   <── veth ──>  lan0  10.a.b.N/24
      (registry, control plane,               agent (listens on 10.a.b.N),
       router's upstreams: all                its own bridge, containers and
       on/through this address)               nft tables, all inside

What listens for the hosts (the registry, the control plane for the join)
listens on the LAN's first address, as it would on a real network; the
root namespace's loopback is invisible from a host. A host's link can be
removed (:func:`link_down`: its veth deleted, so nothing on it answers) and
put back (:func:`link_up`). Every name carries a random suffix, so runs on
a shared machine never meet; :func:`lan` removes everything at the end.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from runtime_agent.host.cmd import run
from tests.support.agent_harness import unused_subnet

INSIDE = "lan0"


@dataclass
class NetnsHost:
    netns: str
    address: IPv4Address
    outside: str  # the root namespace's end of its veth (on the LAN bridge)


@dataclass
class Lan:
    bridge: str
    subnet: IPv4Network
    hosts: list[NetnsHost] = field(default_factory=list)

    @property
    def gateway(self) -> IPv4Address:
        """The root namespace's address on the LAN."""
        return self.subnet.network_address + 1

    def add_host(self) -> NetnsHost:
        suffix = secrets.token_hex(3)
        host = NetnsHost(
            netns=f"ph{suffix}",
            address=self.subnet.network_address + 10 + len(self.hosts),
            outside=f"ph{suffix}l",
        )
        self.hosts.append(host)
        run(["ip", "netns", "add", host.netns])
        run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
        link_up(self, host)
        return host


def _in(host: NetnsHost, *argv: str) -> None:
    run(["ip", "-n", host.netns, *argv])


def link_up(lan: Lan, host: NetnsHost) -> None:
    """Plug the host into the LAN (again): a new veth pair, its address inside."""
    run(["ip", "link", "add", host.outside, "type", "veth", "peer", "name", INSIDE,
         "netns", host.netns])  # fmt: skip
    run(["ip", "link", "set", host.outside, "master", lan.bridge, "up"])
    _in(host, "addr", "add", f"{host.address}/{lan.subnet.prefixlen}", "dev", INSIDE)
    _in(host, "link", "set", INSIDE, "up")


def link_down(host: NetnsHost) -> None:
    """Unplug the host: deleting one end of a veth deletes both."""
    run(["ip", "link", "del", host.outside])


@contextlib.contextmanager
def lan() -> Iterator[Lan]:
    """A LAN bridge in the root namespace; its hosts' namespaces and links
    are removed with it (stop their agents first: see agent_harness.cleanup)."""
    net = Lan(bridge=f"pl{secrets.token_hex(3)}", subnet=unused_subnet())
    run(["ip", "link", "add", net.bridge, "type", "bridge"])
    try:
        run(["ip", "addr", "add", f"{net.gateway}/{net.subnet.prefixlen}", "dev", net.bridge])
        run(["ip", "link", "set", net.bridge, "up"])
        yield net
    finally:
        for host in net.hosts:
            run(["ip", "link", "del", host.outside], check=False)
            run(["ip", "netns", "del", host.netns], check=False)
        run(["ip", "link", "del", net.bridge], check=False)
