"""Where the router (and the health check) reaches a web instance, and the
host ports an instance holds.

A container's address lives on its host's bridge, a private network that
only that host routes to. On the router's own machine that is enough: the
bridge is local. A host across the network is different: its bridge is
reachable from nowhere else, and making it so (a route to every host's
container subnet) would need every host to have a subnet of its own,
routes kept in sync on the router's machine, and the hosts' firewalls to
forward traffic to containers from outside, which the network policy
refuses by default.

So a web instance on a host reached over the network is published, like
``docker run -p``, on a port of the host's own address (the address in
its agent URL, which the control plane reaches already): the router's
upstream is ``host-address:route_port``. The agent's DNAT (runtime_agent/
net/ports.py) forwards that port to the container's ``$PORT``; its policy
(net/policy.py) lets DNATed traffic in and still refuses it from other
apps' containers on that host, and containers on other hosts cannot reach
the host's private address at all (private networks are blocked for
containers). Nothing else changes on the host: no routes, no subnet plan,
and it works the same on separate machines and on test hosts made as
network namespaces. The route port is ``router_only``: the agent answers
it for its router sources alone and refuses anyone else, deny by default
(net/ports.py); the join gives the host those sources
(paas/hosts/route_sources.py). A firewall in front of the hosts must let
the router's machine through to the route ports
(``PAAS_ROUTE_PORTS_FIRST``..``LAST``).

So a host across the network joins with its IPv4 address in its agent URL
(checked at join: nginx takes IP literals only, and the agent's DNAT is IPv4).
A host whose agent URL is a loopback address is on the router's machine:
its instances are reached at their container address, as before (no
published port, no DNAT on loopback).

Published ports (an app's TCP port and a web instance's route port) are
allocated per host from two ranges. A route port is unique per host (a
constraint decides between two placements racing for one, and the loser
takes the next). An app's TCP port is kept by its slot (process type and
index) from release to release on a host, so the old and the new
instance hold it together for a while (the agent lets one app's
containers share a port and switches it when the old one goes); two
placements on one host are serialised by a lock on the host's row, so
two apps never take the same free port.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction

from paas.core.errors import ValidationFailed
from paas.hosts.live import instance_changed
from paas.hosts.models import Host, Instance, InstanceState
from paas.hosts.scheduler import NothingFits

ALLOCATION_ATTEMPTS = 20


def host_address(agent_url: str) -> str:
    """The host's address: the one its agent URL names."""
    return urlsplit(agent_url).hostname or ""


def host_is_local(agent_url: str) -> bool:
    """An agent on loopback is on the router's machine: its bridge is local."""
    address = host_address(agent_url)
    if address == "localhost":
        return True
    try:
        return ip_address(address).is_loopback
    except ValueError:
        return False  # a DNS name: a host across the network


def check_agent_address(agent_url: str) -> None:
    """Refuse, at join, an agent URL the router could not use: it connects
    to the host's address as nginx takes it (an IP literal; a DNS name would
    make every route unusable), and the agent publishes ports on IPv4."""
    address = host_address(agent_url)
    if host_is_local(agent_url):
        return
    try:
        ipv4 = ip_address(address).version == 4
    except ValueError:
        ipv4 = False
    if not ipv4:
        raise ValidationFailed(
            f"The agent URL must name the host by its IPv4 address (not {address!r}): "
            "the router reaches the host's instances there.",
            field="agent_url",
        )


def needs_route_port(host: Host, process_type: str) -> bool:
    return process_type == "web" and not host_is_local(host.agent_url)


def upstream_of(
    *, agent_url: str, address: str, port: int, route_port: int | None
) -> tuple[str, int] | None:
    """(address, port) the router and the health check connect to; None
    while the instance has no address yet."""
    if route_port is not None:
        return host_address(agent_url), route_port
    return (address, port) if address else None


def instance_upstream(instance: Instance) -> tuple[str, int] | None:
    return upstream_of(
        agent_url=instance.host.agent_url,
        address=instance.address,
        port=instance.port,
        route_port=instance.route_port,
    )


def publish_ip(instance: Instance) -> str:
    """The address a route port is published on: the host's own, if it is
    an IPv4 literal (the agent wants one), else all of the host's."""
    address = host_address(instance.host.agent_url)
    try:
        return address if ip_address(address).version == 4 else "0.0.0.0"
    except ValueError:
        return "0.0.0.0"


def _used(host: Host) -> set[int]:
    used: set[int] = set()
    for host_port, route_port in Instance.objects.filter(host=host).values_list(
        "host_port", "route_port"
    ):
        used.update(p for p in (host_port, route_port) if p is not None)
    return used


def _first_free(host: Host, first: int, last: int, used: set[int], what: str) -> int:
    for port in range(first, last + 1):
        if port not in used:
            used.add(port)
            return port
    raise NothingFits(f"{host.name} has no free {what} port left.")


def ports_for(
    host: Host, *, process_type: str, tcp_port: int | None, slot_port: int | None = None
) -> dict[str, int]:
    """The host ports a new instance of ``process_type`` needs on ``host``;
    ``slot_port``, the host port its slot had in an earlier release, is kept."""
    used = _used(host)
    ports = {}
    if tcp_port is not None:
        ports["host_port"] = slot_port or _first_free(
            host, settings.PAAS_TCP_PORTS_FIRST, settings.PAAS_TCP_PORTS_LAST, used, "TCP"
        )
    if needs_route_port(host, process_type):
        ports["route_port"] = _first_free(
            host, settings.PAAS_ROUTE_PORTS_FIRST, settings.PAAS_ROUTE_PORTS_LAST, used, "route"
        )
    return ports


def instance_create(*, host: Host, process_type: str, **fields: Any) -> Instance:
    """A new instance row with the host ports it needs allocated."""
    for _ in range(ALLOCATION_ATTEMPTS):
        try:
            with transaction.atomic():
                Host.objects.select_for_update().filter(pk=host.pk).first()
                ports = ports_for(
                    host, process_type=process_type, tcp_port=fields.get("tcp_port"),
                    slot_port=_slot_port(host, process_type, fields["app"].pk, fields["index"]),
                )  # fmt: skip
                instance = Instance.objects.create(
                    host=host, process_type=process_type, **fields, **ports
                )
                instance_changed(instance)
                return instance
        except IntegrityError:
            if not ports:
                raise  # not a port race: a slot taken twice
    raise NothingFits(f"Could not allocate a port on {host.name}; try again.")


def _slot_port(host: Host, process_type: str, app_id: int, index: int) -> int | None:
    """The TCP host port the slot had in the latest earlier release on this
    host: the app's published port stays where its clients know it."""
    port: int | None = (
        Instance.objects.filter(
            app_id=app_id, process_type=process_type, index=index, host=host,
            host_port__isnull=False,
        )
        .order_by("-release__number")
        .values_list("host_port", flat=True)
        .first()
    )  # fmt: skip
    return port


def instance_move(*, instance: Instance, host: Host) -> bool:
    """Give the instance's slot to ``host``, with fresh host ports there;
    it is pending until its container is made. Claimed with a conditional
    update on the host it is leaving: of two reconciles moving one slot at
    once, only the one that changed the row goes on (False for the other),
    so the slot's container is never made on two hosts."""
    leaving = instance.host_id
    for _ in range(ALLOCATION_ATTEMPTS):
        try:
            with transaction.atomic():
                # Serialised per host like instance_create (no unique index on
                # host_port: one app's releases share a slot's TCP port).
                Host.objects.select_for_update().filter(pk=host.pk).first()
                ports = ports_for(
                    host, process_type=instance.process_type, tcp_port=instance.tcp_port
                )
                fields: dict[str, Any] = {
                    "host": host, "state": InstanceState.PENDING, "healthy": False,
                    "address": "", "host_port": ports.get("host_port"),
                    "route_port": ports.get("route_port"),
                }  # fmt: skip
                claimed = Instance.objects.filter(pk=instance.pk, host_id=leaving).update(**fields)
        except IntegrityError:
            continue
        if not claimed:
            return False
        for key, value in fields.items():
            setattr(instance, key, value)
        instance_changed(instance)
        return True
    raise NothingFits(f"Could not allocate a port on {host.name}; try again.")
