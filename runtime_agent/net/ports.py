"""Published ports (``docker run -p HOST:CONTAINER``) and outbound NAT with nftables.

Why nftables DNAT rather than a userland proxy:
- it survives an agent restart: the rules live in the kernel, so a published
  port keeps answering while the agent is down or restarting, and an adopted
  container needs nothing re-created;
- no extra process per port or container (the issue aims for zero), nothing
  to supervise, no file descriptors held by the agent;
- no copy: packets are rewritten in the kernel and routed, instead of every
  byte being read into and written out of a proxy, and the container sees
  the real client address for traffic from outside.
The price is that loopback clients need two kernel switches: a DNAT in the
``output`` hook (locally-originated packets skip ``prerouting``) and
``route_localnet`` on the bridge so a packet with a 127.0.0.0/8 source may be
routed out of it; a masquerade rewrites that source to the gateway address so
the container can answer. ``route_localnet`` alone would also let a container
(root in its netns, or CAP_NET_RAW) send packets for 127.0.0.1 to the gateway
and reach host services bound to loopback (the agent API, Redis): the
``guard`` chain drops those at the earliest hook, before any NAT, where
legitimate replies still carry the gateway address (CVE-2020-8558 in
kube-proxy was exactly this). A container calling a published port (its
own or a sibling's, on the host address) is masqueraded too ("hairpin"):
otherwise the answer would go straight across the bridge, skipping the NAT
that must undo the DNAT, unless br_netfilter happens to be loaded.

The whole per-agent table is rendered from the persisted state and replaced in
one ``nft -f`` transaction (atomic: no moment without rules) on setup; after
that a publish or unpublish refills only the ``publish`` chain, also in one
transaction. Every publish rule carries the container id as its comment, so
what belongs to whom is visible in ``nft list table`` and unpublishing a
container drops exactly its rules. Existing connections are unaffected by a
replacement: their NAT bindings live in conntrack, not in the rules.

A route port (``PortBinding.router_only``: a web instance published on a
host across the network for the router, paas/hosts/upstreams.py) is DNATed
only for the router's source addresses (the ``router_sources`` set, from
``PAAS_AGENT_ROUTER_SOURCES`` or the join) and for containers on this host's
bridge (the policy then lets only the instance's own app through). Anyone
else's connection is not DNATed: it reaches the host itself, where the
policy's input chain refuses any new connection to a port in the
``router_only`` set (net/policy.py), whether or not a host process listens
there. An empty ``router_sources`` set answers no one from outside: deny by
default. Filtering before the DNAT, rather than after it in the forward
hook, keeps the refusal's reset coming from the address the client called.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, collapse_addresses

from runtime_agent.host import cmd
from runtime_agent.host.errors import Conflict, InvalidRequest
from runtime_agent.wire import PortBinding

PROTOCOLS = ("tcp", "udp")
ANY = "0.0.0.0"
ROUTER_SOURCES = "router_sources"  # who may reach route ports from outside
ROUTER_ONLY = "router_only"  # the route ports (protocol . port), for the policy


@dataclass(frozen=True)
class Published:
    """The ports one container publishes, towards its address. ``since``
    orders the holders of a shared host port: the earliest wins."""

    address: str
    bindings: tuple[PortBinding, ...]
    since: int = 0


def validate(bindings: Iterable[PortBinding]) -> list[PortBinding]:
    out = []
    for b in bindings:
        if b.protocol not in PROTOCOLS:
            raise InvalidRequest(f"protocol {b.protocol!r} is not tcp or udp", field="ports")
        for port in (b.host_port, b.container_port):
            if not 1 <= port <= 65535:
                raise InvalidRequest(f"port {port} is out of range", field="ports")
        # ipaddress, not inet_aton: glibc's inet_aton accepts anything after
        # a space or newline ("1.2.3.4\nadd rule ..."), and host_ip is
        # written into an nft ruleset. The canonical form is what we keep.
        try:
            host_ip = str(IPv4Address(b.host_ip))
        except ValueError as exc:
            raise InvalidRequest(f"host_ip {b.host_ip!r} is not IPv4", field="ports") from exc
        out.append(dataclasses.replace(b, host_ip=host_ip))
    return out


def _overlap(a: PortBinding, b: PortBinding) -> bool:
    same_ip = a.host_ip == b.host_ip or ANY in (a.host_ip, b.host_ip)
    return a.protocol == b.protocol and a.host_port == b.host_port and same_ip


def check_conflicts(
    cid: str,
    wanted: list[PortBinding],
    published: Mapping[str, Published],
    shares: Collection[str] = (),
) -> None:
    """Refuse a host port that another container (or this request twice)
    holds, unless that container is one of ``shares``: the containers of
    one network group (one app's instances, old release and new) may hold
    the same host port. The first to publish it keeps it; when it goes,
    the next takes over in the same nft transaction: a redeploy switches
    the port cleanly, once the old instance is removed, and a new release
    that fails never took it."""
    for i, b in enumerate(wanted):
        for other in wanted[i + 1 :]:
            if _overlap(b, other):
                raise Conflict(
                    f"host port {b.host_port}/{b.protocol} is requested twice", field="ports"
                )
        for owner, pub in published.items():
            if owner in shares or owner == cid:
                continue
            if any(_overlap(b, held) for held in pub.bindings):
                raise Conflict(
                    f"host port {b.host_port}/{b.protocol} is already published by {owner}",
                    field="ports",
                    owner=owner,
                )


def check_host_port_free(b: PortBinding) -> None:
    """Refuse a port a host process listens on: our DNAT would silently hide it."""
    kind = socket.SOCK_STREAM if b.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        # SO_REUSEADDR: only a live listener conflicts, not TIME_WAIT leftovers.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((b.host_ip, b.host_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(
                    f"host port {b.host_port}/{b.protocol} is in use by a host process",
                    field="ports",
                ) from exc
            if exc.errno != errno.EADDRNOTAVAIL:  # host_ip not (yet) ours: rule still valid
                raise


def _publish_rule(cid: str, address: str, b: PortBinding, bridge: str) -> list[str]:
    match = "" if b.host_ip == ANY else f"ip daddr {b.host_ip} "
    rule = (
        f"{match}{b.protocol} dport {b.host_port} "
        f'dnat to {address}:{b.container_port} comment "{cid}"'
    )
    if not b.router_only:
        return [rule]
    # Containers here (the policy's same-app check decides) and the router.
    return [f'iifname "{bridge}" {rule}', f"ip saddr @{ROUTER_SOURCES} {rule}"]


def _publish_rules(published: Mapping[str, Published], bridge: str) -> list[str]:
    # The earliest holder's rule first: a DNAT ends the chain, so it wins a
    # shared port (see check_conflicts).
    order = sorted(published, key=lambda cid: (published[cid].since, cid))
    return [
        rule
        for cid in order
        for b in published[cid].bindings
        for rule in _publish_rule(cid, published[cid].address, b, bridge)
    ]


def _router_only(published: Mapping[str, Published]) -> list[str]:
    """The ``router_only`` set's elements: every route port's protocol and port."""
    ports = {
        (b.protocol, b.host_port) for p in published.values() for b in p.bindings if b.router_only
    }
    return [f"{proto} . {port}" for proto, port in sorted(ports)]


def _elements(items: Iterable[object]) -> str:
    listed = ", ".join(str(i) for i in items)
    return f"\t\telements = {{ {listed} }}\n" if listed else ""


def render_publish(table: str, published: Mapping[str, Published], bridge: str) -> str:
    """Only the publish chain and the route ports, refilled in one
    transaction: replacing the whole table re-registers its hooks, about
    10 ms more per container start."""
    lines = [f"flush chain ip {table} publish", f"flush set ip {table} {ROUTER_ONLY}"]
    lines += [f"add rule ip {table} publish {r}" for r in _publish_rules(published, bridge)]
    if route_ports := _router_only(published):
        lines.append(f"add element ip {table} {ROUTER_ONLY} {{ {', '.join(route_ports)} }}")
    return "\n".join(lines) + "\n"


def router_sources_set(sources: Iterable[IPv4Network]) -> str:
    """The ``router_sources`` set's declaration. Overlapping networks are
    merged first: nft refuses overlapping intervals."""
    merged = collapse_addresses(sources)
    return (
        f"\tset {ROUTER_SOURCES} {{\n\t\ttype ipv4_addr\n\t\tflags interval\n"
        f"{_elements(merged)}\t}}\n"
    )


def render_router_sources(table: str, sources: Iterable[IPv4Network]) -> str:
    """Refill the ``router_sources`` set in one transaction (the agent's
    router sources changed while it runs): no moment with a half list, the
    chains and hooks stay, and connections already DNATed keep going
    (conntrack holds them, not the set)."""
    lines = [f"flush set ip {table} {ROUTER_SOURCES}"]
    if merged := list(collapse_addresses(sources)):
        lines.append(f"add element ip {table} {ROUTER_SOURCES} {{ {', '.join(map(str, merged))} }}")
    return "\n".join(lines) + "\n"


def render(
    table: str,
    bridge: str,
    subnet: IPv4Network,
    published: Mapping[str, Published],
    filters: str = "",
    router_sources: Iterable[IPv4Network] = (),
) -> str:
    """The complete ruleset for one agent's table, as ``nft -f`` input;
    ``filters`` are more chains for it (net/policy.py's)."""
    body = "\n".join(f"\t\t{r}" for r in _publish_rules(published, bridge))
    return f"""table ip {table} {{}}
delete table ip {table}
table ip {table} {{
{router_sources_set(router_sources)}\tset {ROUTER_ONLY} {{
\t\ttype inet_proto . inet_service
{_elements(_router_only(published))}\t}}
\tchain publish {{
{body}
\t}}
\tchain guard {{
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tiifname "{bridge}" ip daddr 127.0.0.0/8 drop comment "no host loopback for containers"
\t}}
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump publish
\t}}
\tchain output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump publish
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname "{bridge}" ip saddr 127.0.0.0/8 masquerade comment "loopback clients of published ports"
\t\tip saddr {subnet} oifname != "{bridge}" masquerade comment "containers going out"
\t\tip saddr {subnet} oifname "{bridge}" ct status dnat masquerade comment "hairpin"
\t}}
{filters}}}
"""


def apply(ruleset: str) -> None:
    cmd.run(["nft", "-f", "-"], input=ruleset.encode())


def delete_table(table: str) -> None:
    # Declaring then deleting makes this succeed whether or not the table exists.
    cmd.run(["nft", "-f", "-"], input=f"table ip {table} {{}}\ndelete table ip {table}\n".encode())
