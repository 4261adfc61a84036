"""Address allocation inside the host subnet (pure functions; persistence is
the caller's, see :mod:`runtime_agent.netstate`).

The gateway is the subnet's first address (it lives on the bridge). Addresses
are handed out round-robin after the last one given, so a just-released
address is not immediately reused: peers may still hold its ARP entry or a
conntrack entry pointing at the old container.
"""

from __future__ import annotations

from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Network

from runtime_agent.errors import NetworkError


def gateway_of(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + 1


def allocate(subnet: IPv4Network, in_use: Collection[str], last: str | None = None) -> IPv4Address:
    """Return the first free address after ``last`` (wrapping around)."""
    candidates = [a for a in subnet.hosts() if a != gateway_of(subnet)]
    if not candidates:
        raise NetworkError(f"subnet {subnet} is too small for containers", subnet=str(subnet))
    start = 0
    if last is not None and IPv4Address(last) in subnet:
        start = next((i + 1 for i, a in enumerate(candidates) if str(a) == last), 0)
    for offset in range(len(candidates)):
        address = candidates[(start + offset) % len(candidates)]
        if str(address) not in in_use:
            return address
    raise NetworkError(
        f"no free address left in {subnet} ({len(in_use)} in use)", subnet=str(subnet)
    )
