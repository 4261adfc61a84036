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

Container membership lives in chains (``same_app`` in both tables,
``antispoof``) and a set (``ports``) that are flushed and refilled in the
same ``nft`` transaction as the publish chain whenever a container comes or
goes; the rest of the ruleset is written once, with the tables, at setup.
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


@dataclass(frozen=True)
class Member:
    """One attached container, as the policy sees it."""

    cid: str
    address: str
    veth: str
    group: str  # its network group, or a group of its own


def _set(items: Iterable[object]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


def _groups(members: Iterable[Member]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for m in sorted(members, key=lambda m: m.cid):
        groups.setdefault(m.group, []).append(m.address)
    return groups


def _same_app_rules(members: Iterable[Member]) -> list[str]:
    # One rule per group; a lone member's still lets it reach its own
    # published port on a host address (the DNAT brings it back to itself).
    return [
        f"ip saddr {_set(addrs)} ip daddr {_set(addrs)} accept"
        for _, addrs in sorted(_groups(members).items())
    ]


def _antispoof_rules(members: Iterable[Member]) -> list[str]:
    rules = []
    for m in sorted(members, key=lambda m: m.cid):
        rules.append(f'iifname "{m.veth}" ether type ip ip saddr != {m.address} drop')
        rules.append(f'iifname "{m.veth}" ether type arp arp saddr ip != {m.address} drop')
    return rules


def render_members(table: str, members: Iterable[Member]) -> str:
    """Refill the membership chains (one nft transaction with the caller's)."""
    members = list(members)
    lines = [
        f"flush chain ip {table} same_app",
        f"flush chain bridge {table} same_app",
        f"flush chain bridge {table} antispoof",
        f"flush set bridge {table} ports",
    ]
    if members:
        lines.append(f"add element bridge {table} ports {_ports(members)}")
    for rule in _same_app_rules(members):
        lines.append(f"add rule ip {table} same_app {rule}")
        lines.append(f"add rule bridge {table} same_app {rule}")
    lines += [f"add rule bridge {table} antispoof {r}" for r in _antispoof_rules(members)]
    return "\n".join(lines) + "\n"


def _ports(members: Iterable[Member]) -> str:
    return _set(f'"{m.veth}"' for m in sorted(members, key=lambda m: m.cid))


def _host_rules(gateway: IPv4Address, settings: PolicySettings) -> list[str]:
    rules = ["ct state established,related accept"]
    if settings.dns_port is not None:
        for proto in ("udp", "tcp"):
            rules.append(f"ip daddr {gateway} {proto} dport {settings.dns_port} accept")
    if settings.router_ports:
        rules.append(f"tcp dport {_set(settings.router_ports)} accept")
    return rules


def _outbound_rules(settings: PolicySettings) -> list[str]:
    rules = []
    if settings.dns_servers:
        for proto in ("udp", "tcp"):
            rules.append(f"ip daddr {_set(settings.dns_servers)} {proto} dport 53 accept")
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
    return "".join(
        [
            _chain("same_app", _same_app_rules(members)),
            _chain("refuse", [REFUSE]),
            _chain(
                "filter_input",
                [f'iifname "{bridge}" jump container_to_host'],
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
    elements = f"\t\telements = {_ports(members)}\n" if members else ""
    ports_set = f"\tset ports {{\n\t\ttype ifname\n{elements}\t}}\n"
    chains = "".join(
        [
            _chain("antispoof", _antispoof_rules(members)),
            _chain("same_app", _same_app_rules(members)),
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
        f"table bridge {table} {{\n{ports_set}{chains}}}\n"
    )


def delete_bridge_table(table: str) -> str:
    return f"table bridge {table} {{}}\ndelete table bridge {table}\n"
