"""Other "hosts" a container or build step may try to reach: network
namespaces the test makes, each linked to the host by a veth on its own
/30 (the host's end is one of the host's own addresses), each with a
server answering its name (tests/support/netns_servers.py).

The network-policy tests put one at a public-looking address (TEST-NET-2,
standing in for the outside world), one link-local, one in the build
network and one on a private network. Nothing else is ever contacted.
"""

from __future__ import annotations

import secrets
import socket
import threading
from dataclasses import dataclass
from ipaddress import IPv4Network

from pyroute2 import IPRoute, netns

from runtime_agent.net import links
from tests.support.netns_servers import NamespaceServers

PORT = 8080


@dataclass(frozen=True)
class OtherHost:
    netns: str
    address: str
    via: str  # the host's address on the link (one of the host's own addresses)


class Hosts:
    """Namespaces linked to the host, each with a server answering its name."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.made: list[tuple[str, str]] = []
        self.servers = NamespaceServers()

    def add(self, name: str, link: IPv4Network) -> OtherHost:
        ns, host_end = f"{self.tag}-{name}", f"{self.tag}{name[0]}"
        self.made.append((ns, host_end))
        other = linked_host(ns, host_end, link)
        self.servers.start(ns, other.address, PORT, name)
        return other

    def cleanup(self) -> None:
        self.servers.stop()
        for ns, host_end in self.made:
            links.delete_link(host_end)
            links.remove_netns(ns)


def linked_host(ns: str, host_end: str, link: IPv4Network) -> OtherHost:
    """Netns ``ns`` linked to the host by a veth (``host_end`` on the host,
    eth0 in ``ns``) on the /30 ``link``, routed through the host. The caller
    removes both (links.delete_link, links.remove_netns), made or not."""
    host_ip, its_ip = (str(a) for a in link.hosts())
    netns.create(ns)
    with IPRoute() as ipr:
        ipr.link("add", ifname=host_end, kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns})
        idx = ipr.link_lookup(ifname=host_end)[0]
        ipr.addr("add", index=idx, address=host_ip, prefixlen=30)
        ipr.link("set", index=idx, state="up")
    with IPRoute(netns=ns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=idx, address=its_ip, prefixlen=30)
        ipr.link("set", index=idx, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=host_ip)
    return OtherHost(netns=ns, address=its_ip, via=host_ip)


def slash30(network: str) -> IPv4Network:
    """A random /30 inside ``network``."""
    net = IPv4Network(network)
    return IPv4Network(f"{net.network_address + 4 * secrets.randbelow(net.num_addresses // 4)}/30")


def host_listener(address: str, port: int = 0) -> tuple[socket.socket, int]:
    """A server on one of the host's own addresses, answering 'host'."""
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(8)
    s.settimeout(15)

    def serve() -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return  # closed by the test, or nobody came
            with conn:
                conn.sendall(b"host\n")

    threading.Thread(target=serve, daemon=True).start()
    return s, int(s.getsockname()[1])
