"""Route ports answer the router only (runtime_agent/net/ports.py), for real:
a web instance published for the router on one of the host's addresses
(``router_only``), a real container behind it (runc, netns, nftables), and
two "other machines", network namespaces this test makes
(tests/support/other_hosts.py): the router's, whose address is the agent's
router source, and a stranger's. The stranger's connection is refused; the
router's is answered by the container. Nothing else is ever contacted.
"""

from __future__ import annotations

import contextlib
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

import aiohttp
import pytest

from runtime_agent.api import router_sources as router_sources_api
from runtime_agent.api.server import ApiServer, create_app
from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.cmd import run
from runtime_agent.host.errors import Conflict
from runtime_agent.router_sources import RouterSourcesKeeper
from tests.support.agent_harness import (
    AgentUnderTest,
    LocalImages,
    request,
    server_tls,
    unique,
)
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


# --- the router sources replaced while the agent runs (PUT /v1/router-sources) -------


@dataclass
class Api:
    """The agent's HTTP API in front of ``agent``, as the daemon wires it."""

    session: aiohttp.ClientSession
    keeper: RouterSourcesKeeper

    async def push(self, sources: object, **kw: Any) -> tuple[int, dict[str, Any]]:
        body = {"router_sources": sources} if "json" not in kw else kw.pop("json")
        resp = await self.session.put("/v1/router-sources", json=body, **kw)
        return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def api_for(agent: AgentUnderTest) -> AsyncIterator[Api]:
    manager = await agent.manager()
    app = create_app(manager, agent.images, agent.config)
    keeper = RouterSourcesKeeper(agent.root, agent.config.router_sources,
                                 agent.network.set_router_sources,
                                 pinned_by_setting=agent.config.router_sources_pinned)  # fmt: skip
    app.add_routes(router_sources_api.routes(keeper))
    server = ApiServer(app, "127.0.0.1", 0, 2.0, tls=server_tls().context)
    await server.start()
    try:
        async with aiohttp.ClientSession(
            base_url=f"https://127.0.0.1:{server.port}", connector=server_tls().connector(),
            headers={"Authorization": f"Bearer {agent.config.token}"},
        ) as session:  # fmt: skip
            yield Api(session, keeper)
    finally:
        await server.stop()


def _saved(agent: AgentUnderTest) -> str:
    return (agent.root / "router_sources").read_text().strip()


async def test_a_push_moves_route_ports_to_the_new_router_without_a_restart(
    agent: AgentUnderTest, machines: Machines
) -> None:
    """The router moved: the stranger's machine is the router now."""
    async with api_for(agent) as api:
        manager = agent.managers[0]
        host_ip = machines.router.via
        name, route_port = await web_instance(manager, host_ip)
        pid = manager.inspect(name).pid
        assert connect_from(machines.router, host_ip, route_port) == name
        assert connect_from(machines.stranger, host_ip, route_port) == REFUSED

        status, said = await api.push([machines.stranger.address])
        assert status == 200, said
        assert said["in_effect"] == [f"{machines.stranger.address}/32"]
        assert said["overridden_by"] is None
        assert connect_from(machines.stranger, host_ip, route_port) == name
        assert connect_from(machines.router, host_ip, route_port) == REFUSED
        # Kept for the next start, and the container never noticed.
        assert _saved(agent) == f"{machines.stranger.address}/32"
        assert manager.inspect(name).pid == pid
        assert _publish_rules(agent, name) == 2


ECHO_CLIENT = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
    "for line in sys.stdin:\n"
    "    s.sendall(line.encode())\n"
    "    print(s.recv(64).decode().strip() or 'closed', flush=True)\n"
)


async def test_a_connection_the_router_holds_outlives_a_push_that_drops_it(
    agent: AgentUnderTest, machines: Machines
) -> None:
    """Only new connections are checked against the new list: a request in
    flight through the old router finishes."""
    async with api_for(agent) as api:
        manager = agent.managers[0]
        name, route_port = unique("echo"), free_port("0.0.0.0")
        host_ip = machines.router.via
        ports = [{"container_port": PORT, "host_port": route_port, "host_ip": host_ip,
                  "router_only": True}]  # fmt: skip
        await manager.create(request(name, ["nc", "-ll", "-p", str(PORT), "-e", "cat"],
                                     network_group="echo", ports=ports))  # fmt: skip
        argv = ["ip", "netns", "exec", machines.router.netns, sys.executable, "-c",
                ECHO_CLIENT, host_ip, str(route_port)]  # fmt: skip
        client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdin is not None and client.stdout is not None
        try:
            client.stdin.write("one\n")
            client.stdin.flush()
            assert client.stdout.readline().strip() == "one"
            status, said = await api.push([machines.stranger.address])
            assert status == 200, said
            client.stdin.write("two\n")
            client.stdin.flush()
            assert client.stdout.readline().strip() == "two"
            assert connect_from(machines.router, host_ip, route_port) == REFUSED
        finally:
            client.stdin.close()
            assert client.wait(timeout=30) == 0


async def test_a_host_without_router_sources_takes_route_ports_after_a_push(
    tmp_agent_root: Path, tmp_path: Path, machines: Machines
) -> None:
    """A host that joined before the join handed out router sources."""
    a = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"))
    try:
        await a.setup()
        async with api_for(a) as api:
            manager = a.managers[0]
            with pytest.raises(Conflict, match="router sources"):
                await web_instance(manager, machines.router.via)
            # A second router (a network) and the first one: both answered.
            both = [f"{machines.router.address}", str(slash30("192.0.2.0/24"))]
            status, said = await api.push(both)
            assert status == 200, said
            name, route_port = await web_instance(manager, machines.router.via)
            assert connect_from(machines.router, machines.router.via, route_port) == name
            assert connect_from(machines.stranger, machines.router.via, route_port) == REFUSED
            got = await api.session.get("/v1/router-sources")
            assert (await got.json())["in_effect"] == [f"{both[0]}/32", both[1]]
    finally:
        await a.cleanup()


async def test_the_hosts_own_setting_wins_over_a_push_and_says_so(
    tmp_agent_root: Path, tmp_path: Path, machines: Machines
) -> None:
    a = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"),
                       router_sources=_only(machines.router),
                       router_sources_pinned=True)  # fmt: skip
    try:
        await a.setup()
        async with api_for(a) as api:
            status, said = await api.push([machines.stranger.address])
            assert status == 200, said
            assert said["overridden_by"] == "PAAS_AGENT_ROUTER_SOURCES"
            assert said["in_effect"] == [f"{machines.router.address}/32"]
            assert "PAAS_AGENT_ROUTER_SOURCES is set on this host and wins" in said["message"]
            # Saved for when the setting goes; the set is the setting's.
            assert _saved(a) == f"{machines.stranger.address}/32"
            assert _sources(a) == [machines.router.address]
            name, route_port = await web_instance(a.managers[0], machines.router.via)
            assert connect_from(machines.router, machines.router.via, route_port) == name
            assert connect_from(machines.stranger, machines.router.via, route_port) == REFUSED
    finally:
        await a.cleanup()


BAD_PUSHES = [
    ({"router_sources": ["10.0.0.5/24"]}, "has host bits set"),
    ({"router_sources": ["router.example"]}, "'router.example' is not an IPv4 address"),
    ({"router_sources": ["fd00::1"]}, "'fd00::1' is not an IPv4 address"),
    ({"router_sources": ["10.0.0.1\nflush ruleset"]}, "is not an IPv4 address"),
    ({"router_sources": [167772161]}, "'167772161' is not an IPv4 address"),
    ({"router_sources": "10.0.0.1"}, "must be a list"),
    ({"router_sources": [f"10.0.{i}.1" for i in range(65)]}, "65 entries; at most 64"),
    ({"router_sources": [], "extra": 1}, 'the body is {"router_sources"'),
    ({"sources": []}, 'the body is {"router_sources"'),
    (["10.0.0.1"], 'the body is {"router_sources"'),
]


@pytest.mark.parametrize(("body", "says"), BAD_PUSHES)
async def test_a_bad_push_is_refused_and_changes_nothing(
    agent: AgentUnderTest, machines: Machines, body: object, says: str
) -> None:
    (agent.root / "router_sources").write_text(f"{machines.router.address}/32\n")
    async with api_for(agent) as api:
        status, said = await api.push(None, json=body)
        assert status == 400, said
        assert says in said["message"], said
    assert _saved(agent) == f"{machines.router.address}/32"
    assert _sources(agent) == [machines.router.address]


async def test_a_push_needs_the_agents_token(agent: AgentUnderTest, machines: Machines) -> None:
    async with api_for(agent) as api:
        status, _ = await api.push(["192.0.2.1"], headers={"Authorization": "Bearer wrong"})
        assert status == 403
        assert _sources(agent) == [machines.router.address]
        assert not (agent.root / "router_sources").exists()
