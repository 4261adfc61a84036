"""The containers' network policy, deny by default, with nftables.

A container may reach the outside world and the other containers of its
own network group (its app, ``CreateContainer.network_group``). It may not
reach other apps' containers (directly, or through a port they publish on
the host: the public way in is the router), the host's own addresses on
any port but the router's public ports and a DNS forwarder (settings), the
build network, link-local addresses (cloud metadata at 169.254.169.254),
or the private networks around the host, unless an allow-list setting
names them. The nameservers the containers are given (resolv.conf) are
reachable on port 53 only.

Where each rule has to sit, because of how a packet travels:

- container to container on the bridge is switched, not routed: the IP
  hooks see it only when br_netfilter is on (``bridge-nf-call-iptables``,
  a host-wide switch we do not rely on), so a ``bridge`` family table
  filters the ``forward`` hook of our containers' bridge ports: ARP and
  IPv4 within the group pass, everything else is dropped (this kernel has
  no ``reject`` and no ``meta ibrname`` in the bridge family, hence the
  set of our ports and the drop; where br_netfilter is on, the IP forward
  chain below refuses the same packets first);
- container to the host (any of its addresses) is the IP ``input`` hook;
  so is anyone outside calling a route port without being the router (a
  ``router_only`` port is DNATed only for the router's sources, see
  net/ports.py): refused there;
- container to anywhere else, and to a port published on a host address
  (DNAT sends it back out onto the bridge), is the IP ``forward`` hook.

IPv6 is off for containers (net/sandbox.py switches it off in every
container namespace and the agent's bridge): the bridge drops every frame
that is neither IPv4 nor ARP, so there is no second family to get right.

No spoofing: CAP_NET_RAW is out of the containers' capability set (no raw
or packet sockets, so no forged headers), and, in case a container ever
gets a second address, each bridge port only passes IPv4 and ARP with its
own container's source address.

Refusals at the IP layer answer (TCP reset, ICMP admin-prohibited) rather
than drop, so a blocked client fails at once instead of waiting out its
timeout.

Container membership lives in sets and maps (see ``_IP_SETS``), changed by a
few elements in the same ``nft`` transaction as the publish chain when a
container comes or goes; the rules are written once, with the tables, at
setup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

REFUSE = "meta l4proto tcp reject with tcp reset\n\t\treject with icmp type admin-prohibited"


# Never reached unless allowed: private (RFC 1918), shared (CGNAT),
# link-local (cloud metadata), "this network", multicast and reserved.
DEFAULT_BLOCKED = tuple(
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
DEFAULT_BUILD_SUBNET = IPv4Network("10.89.0.0/24")  # the builder's default


@dataclass(frozen=True)
class PolicySettings:
    router_ports: tuple[int, ...] = ()  # open on every host address
    dns_port: int | None = None  # a DNS forwarder on the gateway address
    dns_servers: tuple[IPv4Address, ...] = ()  # given to containers: port 53 open
    build_subnet: IPv4Network | None = DEFAULT_BUILD_SUBNET
    blocked: tuple[IPv4Network, ...] = DEFAULT_BLOCKED
    allowed: tuple[IPv4Network, ...] = ()  # wins over blocked and build_subnet
    # Who may reach route ports from outside (the router, the health check):
    # net/ports.py; empty: no one.
    router_sources: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True)
class Member:
    """One attached container, as the policy sees it."""

    cid: str
    address: str
    veth: str
    gid: (
        int  # its network group's number (HostNetwork numbers groups; a lone container has its own)
    )


def _set(items: Iterable[object]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


# Membership is data, not rules: sets and maps that a container's attach or
# detach changes by a few elements (one short nft transaction; no rule is
# rewritten). "Same group" is two lookups: the source address's group goes
# into the packet mark, then (destination, mark) must be a member. The mark
# never leaves the host: it is scrubbed when the packet crosses into the
# container's namespace.
_IP_SETS = (
    ("map group_of", "type ipv4_addr : mark", lambda m: f"{m.address} : {m.gid}"),
    ("set addr_group", "type ipv4_addr . mark", lambda m: f"{m.address} . {m.gid}"),
)
_BRIDGE_SETS = (
    *_IP_SETS,
    ("set ports", "type ifname", lambda m: f'"{m.veth}"'),
    ("set port_addr", "type ifname . ipv4_addr", lambda m: f'"{m.veth}" . {m.address}'),
)
SAME_APP = [
    "meta mark set 0",  # no group (0 is none's) unless the source address has one
    "meta mark set ip saddr map @group_of",
    "ip daddr . meta mark @addr_group accept",
]


def _declare(sets: Iterable[tuple[str, str, object]], members: list[Member]) -> str:
    out = []
    for kind_name, type_line, element in sets:
        elements = _set(element(m) for m in members) if members else ""  # type: ignore[operator]
        body = f"\t\t{type_line}\n" + (f"\t\telements = {elements}\n" if elements else "")
        out.append(f"\t{kind_name} {{\n{body}\t}}\n")
    return "".join(out)


def render_join(table: str, member: Member) -> str:
    """Add one container to the sets (nft -f input; idempotent)."""
    return _elements("add", table, member)


def render_change(table: str, join: Member | None, leave: Member | None) -> str:
    """Who joined and who left, as nft -f input (empty for neither)."""
    return (render_join(table, join) if join else "") + (
        render_leave(table, leave) if leave else ""
    )


def render_leave(table: str, member: Member) -> str:
    """Take one container out of the sets (its elements must be there)."""
    return _elements("delete", table, member)


def _elements(verb: str, table: str, m: Member) -> str:
    lines = [
        f"{verb} element {family} {table} {kind_name.split()[1]} {{ {element(m)} }}"
        for family, sets in (("ip", _IP_SETS), ("bridge", _BRIDGE_SETS))
        for kind_name, _, element in sets
    ]
    return "\n".join(lines) + "\n"


def _host_rules(gateway: IPv4Address, settings: PolicySettings) -> list[str]:
    rules = ["ct state established,related accept"]
    if settings.dns_port is not None:
        for proto in ("udp", "tcp"):
            rules.append(f"ip daddr {gateway} {proto} dport {settings.dns_port} accept")
    if settings.router_ports:
        rules.append(f"tcp dport {_set(settings.router_ports)} accept")
    if settings.allowed:  # a proxy or private index on the host itself
        rules.append(f"ip daddr {_set(settings.allowed)} accept")
    return rules + _nameserver_rules(settings)  # a nameserver may be the host itself


def _nameserver_rules(settings: PolicySettings) -> list[str]:
    if not settings.dns_servers:
        return []
    servers = _set(settings.dns_servers)
    return [f"ip daddr {servers} {proto} dport 53 accept" for proto in ("udp", "tcp")]


def _outbound_rules(settings: PolicySettings) -> list[str]:
    rules = _nameserver_rules(settings)
    if settings.allowed:
        rules.append(f"ip daddr {_set(settings.allowed)} accept")
    blocked = [*settings.blocked, *([settings.build_subnet] if settings.build_subnet else [])]
    if blocked:
        rules.append(f"ip daddr {_set(blocked)} goto refuse")
    return rules


def _chain(name: str, rules: Iterable[str], hook: str = "") -> str:
    body = "".join(f"\t\t{r}\n" for r in rules)
    head = f"\t\t{hook}\n" if hook else ""
    return f"\tchain {name} {{\n{head}{body}\t}}\n"


def render_ip_chains(
    bridge: str, gateway: IPv4Address, settings: PolicySettings, members: Iterable[Member]
) -> str:
    """The filter chains of the agent's ``ip`` table (inside its braces)."""
    members = list(members)
    return _declare(_IP_SETS, members) + "".join(
        [
            _chain("same_app", SAME_APP),
            _chain("refuse", [REFUSE]),
            _chain(
                "filter_input",
                [
                    f'iifname "{bridge}" jump container_to_host',
                    # A route port not DNATed (net/ports.py): not the router.
                    "ct state new meta l4proto . th dport @router_only goto refuse",
                ],
                "type filter hook input priority filter; policy accept;",
            ),
            _chain("container_to_host", [*_host_rules(gateway, settings), "goto refuse"]),
            _chain(
                "filter_forward",
                [
                    f'iifname "{bridge}" jump from_container',
                    f'oifname "{bridge}" jump to_container',
                ],
                "type filter hook forward priority filter; policy accept;",
            ),
            _chain(
                "from_container",
                [
                    "ct state established,related accept",
                    # Back onto the bridge: a port published on a host address.
                    f'oifname "{bridge}" jump same_app',
                    f'oifname "{bridge}" goto refuse',
                    *_outbound_rules(settings),
                    "accept",
                ],
            ),
            _chain(
                "to_container",
                [
                    "ct state established,related accept",
                    "ct status dnat accept",  # published ports
                    "goto refuse",
                ],
            ),
        ]
    )


def render_bridge_table(table: str, members: Iterable[Member]) -> str:
    """The agent's ``bridge`` table, created afresh (nft -f input)."""
    members = list(members)
    chains = "".join(
        [
            _chain(
                "antispoof",
                [
                    "ether type ip iifname . ip saddr != @port_addr drop",
                    "ether type arp iifname . arp saddr ip != @port_addr drop",
                ],
            ),
            _chain("same_app", SAME_APP),
            _chain(
                "forward",
                ["iifname @ports jump antispoof", "iifname @ports goto between_containers"],
                "type filter hook forward priority filter; policy accept;",
            ),
            _chain(
                "between_containers",
                ["ether type arp accept", "ether type ip jump same_app", "drop"],
            ),
            _chain(
                "input",
                ["iifname @ports jump antispoof", "iifname @ports goto container_to_host"],
                "type filter hook input priority filter; policy accept;",
            ),
            _chain("container_to_host", ["ether type { ip, arp } accept", "drop"]),
        ]
    )
    return (
        f"table bridge {table} {{}}\ndelete table bridge {table}\n"
        f"table bridge {table} {{\n{_declare(_BRIDGE_SETS, members)}{chains}}}\n"
    )


def delete_bridge_table(table: str) -> str:
    return f"table bridge {table} {{}}\ndelete table bridge {table}\n"
