"""Address allocation inside the host subnet (pure functions; persistence is
the caller's, see :mod:`runtime_agent.net.state`).

The gateway is the subnet's first address (it lives on the bridge). Addresses
are handed out round-robin after the last one given, so a just-released
address is not immediately reused: peers may still hold its ARP entry or a
conntrack entry pointing at the old container.
"""

from __future__ import annotations

from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Network

from runtime_agent.host.errors import NetworkError


def gateway_of(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + 1


def allocate(subnet: IPv4Network, in_use: Collection[str], last: str | None = None) -> IPv4Address:
    """Return the first free address after ``last`` (wrapping around).

    Works on integers: a /16 has 65k candidates and this runs on every start.
    """
    first = int(gateway_of(subnet)) + 1
    count = int(subnet.broadcast_address) - first  # up to the broadcast, excluded
    if count <= 0:
        raise NetworkError(f"subnet {subnet} is too small for containers", subnet=str(subnet))
    taken = {int(IPv4Address(a)) for a in in_use}
    start = 0
    if last is not None and IPv4Address(last) in subnet:
        start = (int(IPv4Address(last)) - first + 1) % count
    for offset in range(count):
        candidate = first + (start + offset) % count
        if candidate not in taken:
            return IPv4Address(candidate)
    raise NetworkError(
        f"no free address left in {subnet} ({len(taken)} in use)", subnet=str(subnet)
    )
