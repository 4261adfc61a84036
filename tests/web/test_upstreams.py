"""Where the router reaches an instance: at its container address on the
router's own machine, at its host's address and route port on a host across
the network; and the host ports an instance holds, per host."""

from __future__ import annotations

from typing import Any

import pytest

from paas.applications.models import Release
from paas.applications.services import app_create
from paas.core.errors import ValidationFailed
from paas.hosts.instances import instance_request
from paas.hosts.models import Host, Instance, InstanceState
from paas.hosts.scheduler import NothingFits
from paas.hosts.services import host_join, join_token_create
from paas.hosts.upstreams import (
    host_is_local,
    instance_create,
    instance_move,
    instance_upstream,
    upstream_of,
)
from runtime_agent.wire import PortBinding

pytestmark = pytest.mark.django_db
GiB = 1024**3


def test_an_agent_on_loopback_is_on_the_routers_machine() -> None:
    assert host_is_local("http://127.0.0.1:7070")
    assert host_is_local("https://localhost:7070")
    assert host_is_local("http://[::1]:7070")
    assert not host_is_local("http://10.0.0.2:7070")
    assert not host_is_local("https://host-2.example.com:7070")


@pytest.mark.parametrize("url", ["https://agent.example.com:7070", "https://[fd00::2]:7070"])
def test_a_host_across_the_network_joins_by_its_ipv4_address(url: str) -> None:
    _, raw = join_token_create(user=None)
    pin = "ab" * 32  # a SHA-256 fingerprint; nothing connects here
    with pytest.raises(ValidationFailed, match="must name the host by its IPv4 address"):
        host_join(raw_token=raw, name="far", agent_url=url, tls_fingerprint=pin)
    assert not Host.objects.exists()
    host, _ = host_join(
        raw_token=raw, name="far", agent_url="https://10.0.0.2:7070", tls_fingerprint=pin
    )
    assert host.agent_url == "https://10.0.0.2:7070"


def test_the_upstream_is_the_host_port_when_there_is_one() -> None:
    url = "http://10.0.0.2:7070"
    assert upstream_of(agent_url=url, address="10.88.0.5", port=8080, route_port=30001) == (
        "10.0.0.2", 30001,
    )  # fmt: skip
    assert upstream_of(agent_url=url, address="10.88.0.5", port=8080, route_port=None) == (
        "10.88.0.5", 8080,
    )  # fmt: skip
    assert upstream_of(agent_url=url, address="", port=8080, route_port=None) is None


@pytest.fixture
def release(alice: Any) -> Release:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    return Release.objects.create(app=app, number=1, image="r/hello@sha256:" + "0" * 64)


def _new(release: Release, host: Host, index: int, tcp_port: int | None = None) -> Instance:
    instance = instance_create(
        host=host, process_type="web", app=release.app, release=release, index=index,
        container_name=f"hello.v1.web.{index}", memory_bytes=GiB, tcp_port=tcp_port,
    )  # fmt: skip
    return Instance.objects.select_related("host", "release", "app").get(pk=instance.pk)


def test_a_web_instance_across_the_network_is_published_on_its_hosts_address(
    release: Release, settings: Any
) -> None:
    settings.PAAS_ROUTE_PORTS_FIRST, settings.PAAS_ROUTE_PORTS_LAST = 31000, 31001
    remote = Host.objects.create(name="b", agent_url="http://10.0.0.2:7070")
    local = Host.objects.create(name="a", agent_url="http://127.0.0.1:7070")
    first, second = _new(release, remote, 1), _new(release, remote, 2, tcp_port=9000)
    assert (first.route_port, second.route_port) == (31000, 31001)
    assert second.host_port == settings.PAAS_TCP_PORTS_FIRST
    with pytest.raises(NothingFits, match="b has no free route port"):
        _new(release, remote, 3)
    assert _new(release, local, 3).route_port is None  # the router's machine: no DNAT

    first.address = "10.88.0.5"
    assert instance_upstream(first) == ("10.0.0.2", 31000)
    assert instance_request(first).ports == [
        # The router's way in: the agent answers it for its router sources only.
        PortBinding(container_port=8080, host_port=31000, host_ip="10.0.0.2", router_only=True)
    ]
    assert instance_request(second).ports == [
        PortBinding(container_port=9000, host_port=settings.PAAS_TCP_PORTS_FIRST),
        PortBinding(container_port=8080, host_port=31001, host_ip="10.0.0.2", router_only=True),
    ]


def test_a_hosts_tcp_and_route_ports_never_clash_even_if_the_ranges_overlap(
    release: Release, settings: Any
) -> None:
    settings.PAAS_TCP_PORTS_FIRST, settings.PAAS_TCP_PORTS_LAST = 31000, 31003
    settings.PAAS_ROUTE_PORTS_FIRST, settings.PAAS_ROUTE_PORTS_LAST = 31000, 31003
    host = Host.objects.create(name="b", agent_url="http://10.0.0.2:7070")
    ports: list[int | None] = []
    for index in (1, 2):
        instance = _new(release, host, index, tcp_port=9000)
        ports += [instance.host_port, instance.route_port]
    assert ports == [31000, 31001, 31002, 31003]  # TCP first, then route, per instance


def test_a_moved_instance_gets_the_ports_of_its_new_host(release: Release, settings: Any) -> None:
    a = Host.objects.create(name="a", agent_url="http://10.0.0.1:7070")
    b = Host.objects.create(name="b", agent_url="http://10.0.0.2:7070")
    on_a, on_b = _new(release, a, 1, tcp_port=9000), _new(release, b, 2, tcp_port=9000)
    assert on_a.route_port == on_b.route_port == settings.PAAS_ROUTE_PORTS_FIRST  # per host
    on_b.address = "10.88.0.9"
    stale = Instance.objects.select_related("host").get(pk=on_b.pk)
    assert instance_move(instance=on_b, host=a)
    # A second reconcile that read the row before the move does not move it again.
    assert not instance_move(instance=stale, host=b)
    on_b.refresh_from_db()
    assert on_b.host == a and on_b.state == InstanceState.PENDING and on_b.address == ""
    # Both ports differ from the ones web.1 holds on a.
    assert on_a.host_port is not None and on_a.route_port is not None
    assert (on_b.host_port, on_b.route_port) == (on_a.host_port + 1, on_a.route_port + 1)
