"""Who a host's route ports answer: the router and the health check.

A web instance on a host across the network is published on a route port
of the host's address (paas/hosts/upstreams.py). The agent answers that
port only for its router sources (``PAAS_AGENT_ROUTER_SOURCES``, see
runtime_agent/net/ports.py) and refuses everyone else: the network denies
by default. The router (nginx) and the health check (the Celery worker)
run on the control plane's machine, so the control plane hands those
sources to the host when it joins (and pushes a changed list to its
running agent: paas/hosts/router_push.py), and the operator sets nothing
on the host.

By default the source is the address this machine's kernel would use to
reach the host's address: the one nginx and the health check connect
from. A UDP ``connect`` asks the kernel for that route without sending a
packet. Where that is not the address the host sees (a NAT in between, a
router on other machines), ``PAAS_ROUTER_SOURCES`` names the networks
instead.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

from django.conf import settings

from paas.core.errors import ValidationFailed
from paas.hosts.upstreams import host_address, host_is_local


def route_sources(*, agent_url: str) -> list[str]:
    """The networks a host joining at ``agent_url`` must answer on its route
    ports; empty for a host on this machine (it publishes none)."""
    if host_is_local(agent_url):
        return []
    if settings.PAAS_ROUTER_SOURCES:
        # Without duplicates, as the agent keeps them: compared with its answer.
        return list(dict.fromkeys(settings.PAAS_ROUTER_SOURCES))
    try:
        address = IPv4Address(host_address(agent_url))
    except ValueError:
        return []  # not a host the join accepts (upstreams.check_agent_address says why)
    return [f"{source_towards(address)}/32"]


def source_towards(address: IPv4Address) -> IPv4Address:
    """The address this machine connects to ``address`` from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(address), 9))  # no packet is sent; any port will do
        except OSError as exc:
            raise ValidationFailed(
                f"This machine has no route to {address} ({exc.strerror}): the router could "
                "not reach the host there. Fix the route, or set PAAS_ROUTER_SOURCES.",
                field="agent_url",
            ) from None
        return IPv4Address(probe.getsockname()[0])
