"""Route ports answer the router only (runtime_agent/net/ports.py), for real:
a web instance published for the router on one of the host's addresses
(``router_only``), a real container behind it (runc, netns, nftables), and
two "other machines", network namespaces this test makes
(tests/support/other_hosts.py): the router's, whose address is the agent's
router source, and a stranger's. The stranger's connection is refused; the
router's is answered by the container. Nothing else is ever contacted.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.cmd import run
from runtime_agent.host.errors import Conflict
from tests.support.agent_harness import AgentUnderTest, LocalImages, request, unique
from tests.support.other_hosts import PORT, Hosts, OtherHost, host_listener, slash30
from tests.support.processes import free_port

pytestmark = pytest.mark.root

REFUSED = "refused"
CLIENT = (
    "import socket, sys\n"
    "try:\n"
    "    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
    "except ConnectionRefusedError:\n"
    "    print('refused'); sys.exit()\n"
    "print(s.recv(64).decode().strip() or 'closed')\n"
)


@dataclass
class Machines:
    router: OtherHost  # its address is the router source
    stranger: OtherHost


@pytest.fixture
def machines() -> Iterator[Machines]:
    hosts = Hosts(f"rp{secrets.token_hex(3)}")
    try:
        yield Machines(
            router=hosts.add("router", slash30("203.0.113.0/24")),
            stranger=hosts.add("stranger", slash30("198.51.100.0/24")),
        )
    finally:
        hosts.cleanup()


def _only(host: OtherHost) -> tuple[IPv4Network, ...]:
    return (IPv4Network(f"{host.address}/32"),)


@pytest.fixture
async def agent(
    tmp_agent_root: Path, tmp_path: Path, machines: Machines
) -> AsyncIterator[AgentUnderTest]:
    a = AgentUnderTest(
        tmp_agent_root, LocalImages(tmp_path / "images"), router_sources=_only(machines.router)
    )
    try:
        yield await a.setup()
    finally:
        await a.cleanup()
    # Cleanup took the agent's rules with it.
    assert run(["nft", "list", "table", "ip", a.config.nft_table], check=False).returncode != 0


def connect_from(machine: OtherHost, address: str, port: int) -> str:
    """What a TCP client on ``machine`` gets from address:port: the
    container's name, or REFUSED."""
    argv = ["ip", "netns", "exec", machine.netns, sys.executable, "-c", CLIENT, address, str(port)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


async def web_instance(
    manager: ContainerManager, host_ip: str, group: str = "shop"
) -> tuple[str, int]:
    """A container answering its name, published on a route port of ``host_ip``."""
    name, route_port = unique(group), free_port("0.0.0.0")
    cmd = ["nc", "-ll", "-p", str(PORT), "-e", "hostname"]
    ports = [{"container_port": PORT, "host_port": route_port, "host_ip": host_ip,
              "router_only": True}]  # fmt: skip
    await manager.create(request(name, cmd, network_group=group, hostname=name, ports=ports))
    return name, route_port


async def test_a_route_port_answers_the_router_and_refuses_another_machine(
    agent: AgentUnderTest, machines: Machines
) -> None:
    manager = await agent.manager()
    # Published on the host's address on the router's link; the stranger's
    # packets reach it too (the host routes between its links).
    host_ip = machines.router.via
    name, route_port = await web_instance(manager, host_ip)
    assert connect_from(machines.router, host_ip, route_port) == name
    assert connect_from(machines.stranger, host_ip, route_port) == REFUSED
    # Also when the stranger calls the address on its own link.
    other_name, other_port = await web_instance(manager, machines.stranger.via, "blog")
    assert connect_from(machines.stranger, machines.stranger.via, other_port) == REFUSED
    assert connect_from(machines.router, machines.stranger.via, other_port) == other_name


async def test_a_host_process_on_a_route_port_is_no_way_around(
    agent: AgentUnderTest, machines: Machines
) -> None:
    """A connection the DNAT did not take is refused at the host's input,
    whatever listens there (a route port is the router's, not the public's)."""
    manager = await agent.manager()
    host_ip = machines.router.via
    _, route_port = await web_instance(manager, host_ip)
    listener, _ = host_listener(host_ip, route_port)  # came after the publish
    try:
        assert connect_from(machines.stranger, host_ip, route_port) == REFUSED
    finally:
        listener.close()


async def test_a_plain_published_port_still_answers_everyone(
    agent: AgentUnderTest, machines: Machines
) -> None:
    """An app's TCP port (``docker run -p``) is public by design."""
    manager = await agent.manager()
    name, port = unique("tcp"), free_port("0.0.0.0")
    cmd = ["nc", "-ll", "-p", str(PORT), "-e", "hostname"]
    ports = [{"container_port": PORT, "host_port": port, "host_ip": machines.router.via}]
    await manager.create(request(name, cmd, network_group="tcp", hostname=name, ports=ports))
    assert connect_from(machines.stranger, machines.router.via, port) == name


def _table(agent: AgentUnderTest) -> dict[str, list[dict[str, object]]]:
    listed = run(["nft", "-j", "list", "table", "ip", agent.config.nft_table]).stdout
    out: dict[str, list[dict[str, object]]] = {}
    for item in json.loads(listed)["nftables"]:
        for kind, body in item.items():
            out.setdefault(kind, []).append(body)
    return out


def _sources(agent: AgentUnderTest) -> list[str]:
    """The router_sources set's elements as nft holds them (``a.b.c.d`` or ``a.b.c.d/n``)."""
    [found] = [s for s in _table(agent)["set"] if s["name"] == "router_sources"]
    elements: list[Any] = found.get("elem", [])  # type: ignore[assignment]
    return [e if isinstance(e, str) else "{addr}/{len}".format(**e["prefix"]) for e in elements]


def _publish_rules(agent: AgentUnderTest, cid: str) -> int:
    rules = _table(agent).get("rule", [])
    return sum(1 for r in rules if r["chain"] == "publish" and r.get("comment") == cid)


async def test_a_changed_setting_takes_effect_on_agent_restart_without_leftovers(
    agent: AgentUnderTest, machines: Machines, tmp_path: Path
) -> None:
    manager = await agent.manager()
    host_ip = machines.router.via
    name, route_port = await web_instance(manager, host_ip)
    assert connect_from(machines.router, host_ip, route_port) == name
    assert _sources(agent) == [machines.router.address]
    assert _publish_rules(agent, name) == 2  # containers on the bridge; the router

    # The agent restarts with the stranger's address as its router source
    # (the container runs on: its rules are rendered again from the state).
    restarted = AgentUnderTest(
        agent.root,
        LocalImages(tmp_path / "images-2"),
        **{f.name: getattr(agent.config, f.name) for f in dataclasses.fields(agent.config)
           if f.name in ("token", "bridge", "subnet", "nft_table")},
        router_sources=_only(machines.stranger),
    )  # fmt: skip
    await restarted.setup()
    assert connect_from(machines.stranger, host_ip, route_port) == name
    assert connect_from(machines.router, host_ip, route_port) == REFUSED
    assert _sources(agent) == [machines.stranger.address]
    assert _publish_rules(agent, name) == 2

    # Removing the container takes its rules and its route port out.
    await manager.remove(name, force=True)
    assert _publish_rules(agent, name) == 0
    assert not [s for s in _table(agent)["set"] if s["name"] == "router_only" and s.get("elem")]


async def test_without_router_sources_a_route_port_is_refused_at_once(
    tmp_agent_root: Path, tmp_path: Path, machines: Machines
) -> None:
    a = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"))
    try:
        manager = await (await a.setup()).manager()
        with pytest.raises(Conflict, match="PAAS_AGENT_ROUTER_SOURCES"):
            await web_instance(manager, machines.router.via)
    finally:
        await a.cleanup()


async def test_overlapping_router_sources_are_merged_for_nft(
    tmp_agent_root: Path, tmp_path: Path
) -> None:
    """nft refuses overlapping intervals in a set; the agent merges them."""
    sources = (IPv4Network("192.0.2.0/24"), IPv4Network("192.0.2.7/32"), IPv4Network("10.9.0.1/32"))
    a = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"), router_sources=sources)
    try:
        await a.setup()
        assert sorted(_sources(a)) == ["10.9.0.1", "192.0.2.0/24"]
    finally:
        await a.cleanup()
