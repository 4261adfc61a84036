"""What a container's network namespace gets besides its veth: no IPv6 and
unprivileged ping.

IPv6 is switched off inside every container namespace (and on the agent's
bridge, see :mod:`runtime_agent.net.bridge`), so the network policy
(:mod:`runtime_agent.net.policy`) has one family to get right; the bridge
also drops every IPv6 frame a container sends. /proc/sys is read-only in
the container, and CAP_NET_ADMIN is outside its bounding set, so it cannot
switch IPv6 back on.

CAP_NET_RAW is not in the containers' capability set (it would allow
forged source addresses and ARP); ``ping_group_range`` lets ping work
without it through ICMP datagram sockets, as Docker does.
"""

from __future__ import annotations

from pathlib import Path

from runtime_agent.host.errors import NetworkError
from runtime_agent.net import nsthread

_SYSCTLS = (
    ("net/ipv6/conf/all/disable_ipv6", "1"),
    ("net/ipv6/conf/default/disable_ipv6", "1"),
    ("net/ipv4/ping_group_range", "0 2147483647"),
)


def seal(netns_path: str) -> None:
    """Apply the sysctls in the namespace (idempotent)."""

    def work() -> None:
        for key, value in _SYSCTLS:
            # /proc/sys/net resolves to the namespace of the calling thread.
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)

    try:
        nsthread.run_in(Path(netns_path), work)
    except OSError as exc:
        raise NetworkError(f"preparing netns {netns_path} failed: {exc}") from exc
