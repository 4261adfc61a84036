"""The network policy, from inside real containers (runc, netns, nftables):
own app open; other apps, the host's ports, the build network, link-local
and private networks refused or dropped; the outside world open; no forged
source address gets through.

"Other hosts" are network namespaces this test makes
(tests/support/other_hosts.py): one at a public-looking address (TEST-NET-2,
standing in for the outside world), one link-local, one in the build
network, one on a private network. Nothing else is ever contacted.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from runtime_agent.containers.manager import ContainerManager
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.net.policy import PolicySettings
from tests.support.agent_harness import AgentUnderTest, LocalImages, exec_sh, request, unique
from tests.support.other_hosts import PORT, Hosts, OtherHost, host_listener, slash30
from tests.support.processes import free_port

pytestmark = pytest.mark.root


@dataclass
class World:
    outside: OtherHost
    link_local: OtherHost
    build: OtherHost
    private: OtherHost


@pytest.fixture
def build_subnet() -> IPv4Network:
    return IPv4Network(f"10.{secrets.choice(range(100, 140))}.{secrets.randbelow(256)}.0/24")


@pytest.fixture
def router_port() -> int:
    return free_port("0.0.0.0")


@pytest.fixture
async def agent(
    tmp_agent_root: Path, tmp_path: Path, build_subnet: IPv4Network, router_port: int
) -> AsyncIterator[AgentUnderTest]:
    a = AgentUnderTest(
        tmp_agent_root,
        LocalImages(tmp_path / "images"),
        build_subnet=build_subnet,
        router_ports=(router_port,),
    )
    try:
        yield await a.setup()
    finally:
        await a.cleanup()


@pytest.fixture
def world(build_subnet: IPv4Network) -> Iterator[World]:
    hosts = Hosts(f"np{secrets.token_hex(3)}")
    try:
        yield World(
            outside=hosts.add("outside", slash30("198.51.100.0/24")),
            link_local=hosts.add("linklocal", slash30("169.254.0.0/16")),
            build=hosts.add("build", slash30(str(build_subnet))),
            private=hosts.add("private", slash30("172.16.0.0/12")),
        )
    finally:
        hosts.cleanup()


REFUSED = "refused"  # an nft reject answered (a TCP reset)
DROPPED = "dropped"  # nothing came back: nc gave up after 3 s


async def connect(manager: ContainerManager, name: str, host: str, port: int = PORT) -> str:
    """What a TCP connection from the container gets: the server's token,
    REFUSED or DROPPED."""
    code, out = await exec_sh(manager, name, f"nc -w 3 {host} {port} </dev/null")
    if code == 0:
        return out.split()[0]  # the server's token (then the address it saw)
    if "Connection refused" in out:
        return REFUSED
    assert "timed out" in out, out
    return DROPPED


async def container(manager: ContainerManager, group: str, *, serve: bool = False) -> str:
    name = unique(group)
    cmd = ["nc", "-ll", "-p", str(PORT), "-e", "hostname"] if serve else ["sleep", "1000"]
    await manager.create(request(name, cmd, network_group=group, hostname=name))
    return name


async def test_a_container_reaches_its_own_apps_instances_and_not_another_apps(
    manager: ContainerManager,
) -> None:
    server = await container(manager, "shop", serve=True)
    sibling, stranger = await container(manager, "shop"), await container(manager, "blog")
    address = manager.inspect(server).address
    assert address is not None
    assert await connect(manager, sibling, address) == server
    # Dropped by the bridge table (the bridge family here has no reject).
    assert await connect(manager, stranger, address) == DROPPED


async def test_another_apps_published_port_is_refused_own_apps_is_open(
    manager: ContainerManager,
) -> None:
    name, host_port = unique("shop"), free_port("0.0.0.0")
    cmd = ["nc", "-ll", "-p", str(PORT), "-e", "hostname"]
    ports = [{"container_port": PORT, "host_port": host_port}]
    await manager.create(request(name, cmd, network_group="shop", hostname=name, ports=ports))
    sibling, stranger = await container(manager, "shop"), await container(manager, "blog")
    gateway = str(manager.preparer.network.gateway)
    assert await connect(manager, sibling, gateway, host_port) == name
    # Rejected after the DNAT, so the reset carries the container's address
    # and the client waits it out: dropped, to the client.
    assert await connect(manager, stranger, gateway, host_port) in (REFUSED, DROPPED)


async def test_the_hosts_ports_are_refused_but_the_routers(
    manager: ContainerManager, world: World, router_port: int
) -> None:
    probe = await container(manager, "shop")
    gateway = str(manager.preparer.network.gateway)
    closed, port = host_listener(gateway)
    router, _ = host_listener(gateway, router_port)
    elsewhere, other_port = host_listener(world.outside.via)  # another of the host's addresses
    try:
        assert await connect(manager, probe, gateway, port) == REFUSED
        assert await connect(manager, probe, world.outside.via, other_port) == REFUSED
        assert await connect(manager, probe, gateway, router_port) == "host"
    finally:
        for s in (closed, router, elsewhere):
            s.close()


async def test_the_outside_world_is_open_and_local_networks_are_not(
    manager: ContainerManager, world: World
) -> None:
    probe = await container(manager, "shop")
    assert await connect(manager, probe, world.outside.address) == "outside"
    assert await connect(manager, probe, world.link_local.address) == REFUSED
    assert await connect(manager, probe, world.build.address) == REFUSED
    assert await connect(manager, probe, world.private.address) == REFUSED


async def test_the_allow_list_opens_a_private_network(
    tmp_agent_root: Path, tmp_path: Path, world: World
) -> None:
    a = AgentUnderTest(
        tmp_agent_root,
        LocalImages(tmp_path / "images"),
        allowed_networks=(IPv4Network(f"{world.private.address}/32"),),
    )
    try:
        manager = await (await a.setup()).manager()
        probe = await container(manager, "shop")
        assert await connect(manager, probe, world.private.address) == "private"
        assert await connect(manager, probe, world.link_local.address) == REFUSED
    finally:
        await a.cleanup()


async def test_a_forged_source_address_does_not_get_through(manager: ContainerManager) -> None:
    # Tenant root cannot add an address (no CAP_NET_ADMIN: test_isolation.py);
    # should a container ever get one, its bridge port still drops it.
    server = await container(manager, "shop", serve=True)
    forger = await container(manager, "shop")
    server_addr, forger_ns = manager.inspect(server).address, manager.records[forger].netns_path
    assert server_addr is not None and forger_ns is not None
    spoofed = str(manager.preparer.network.subnet.broadcast_address - 1)  # nobody's address
    in_ns = ["ip", "netns", "exec", Path(forger_ns).name]
    subprocess.run([*in_ns, "ip", "addr", "add", f"{spoofed}/32", "dev", "eth0"], check=True)
    client = (
        "import socket, sys\n"
        "s = socket.socket(); s.settimeout(3); s.bind((sys.argv[1], 0))\n"
        "s.connect((sys.argv[2], int(sys.argv[3]))); print(s.recv(64).decode().strip())\n"
    )
    argv = [*in_ns, sys.executable, "-c", client]
    honest = subprocess.run(
        [*argv, manager.inspect(forger).address or "", server_addr, str(PORT)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert honest.stdout.strip() == server
    forged = subprocess.run(
        [*argv, spoofed, server_addr, str(PORT)], capture_output=True, text=True, timeout=20
    )
    assert forged.returncode != 0 and "timed out" in forged.stderr


async def test_ipv6_between_containers_is_dropped_even_if_switched_back_on(
    manager: ContainerManager,
) -> None:
    # IPv6 is off in containers; should one get it back (here: root on the
    # host switches it on in both namespaces), the bridge still drops every
    # IPv6 frame, so the app's IPv4 policy cannot be walked around.
    server, client = await container(manager, "shop"), await container(manager, "shop")
    ns = {n: Path(manager.records[n].netns_path or "").name for n in (server, client)}
    for name, address in ((server, "fd00:5::b"), (client, "fd00:5::a")):
        exec_in = ["ip", "netns", "exec", ns[name]]
        subprocess.run([*exec_in, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0",
                        "net.ipv6.conf.eth0.disable_ipv6=0"], check=True)  # fmt: skip
        subprocess.run([*exec_in, "ip", "-6", "addr", "add", f"{address}/64", "dev", "eth0",
                        "nodad"], check=True)  # fmt: skip
    hosts = Hosts("unused")
    try:
        hosts.servers.start(ns[server], "::", PORT, "app")  # dual stack: IPv4 clients too
        client_code = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
            "s.settimeout(3); s.connect((sys.argv[1], int(sys.argv[2])))\n"
            "print(s.recv(64).decode().strip())\n"
        )
        argv = ["ip", "netns", "exec", ns[client], sys.executable, "-c", client_code]
        server_v4 = manager.inspect(server).address or ""
        v4 = subprocess.run([*argv, server_v4, str(PORT)], capture_output=True, text=True)
        assert v4.stdout.split()[:1] == ["app"]  # same app: IPv4 is open
        v6 = subprocess.run([*argv, "fd00:5::b", str(PORT)], capture_output=True, text=True)
        assert v6.returncode != 0 and v6.stdout == "", v6.stdout
    finally:
        hosts.cleanup()


def _ipv6_knob(ifname: str) -> Path:
    return Path("/proc/sys/net/ipv6/conf") / ifname / "disable_ipv6"


async def test_ipv6_to_the_host_is_dropped_even_if_switched_back_on(
    manager: ContainerManager, router_port: int
) -> None:
    # The agent's bridge has IPv6 off. Should root on the host switch it
    # back on (and give the bridge an address) and a container get IPv6
    # too, the router's port, open over IPv4, is still unreachable over
    # IPv6: the bridge passes only IPv4 and ARP from a container's port.
    bridge = manager.preparer.network.bridge
    assert _ipv6_knob(bridge).read_text().strip() == "1"
    probe = await container(manager, "shop")
    ns = Path(manager.records[probe].netns_path or "").name
    subprocess.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{bridge}.disable_ipv6=0"], check=True)
    subprocess.run(["ip", "-6", "addr", "add", "fd00:6::1/64", "dev", bridge, "nodad"], check=True)
    exec_in = ["ip", "netns", "exec", ns]
    subprocess.run([*exec_in, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0",
                    "net.ipv6.conf.eth0.disable_ipv6=0"], check=True)  # fmt: skip
    subprocess.run([*exec_in, "ip", "-6", "addr", "add", "fd00:6::a/64", "dev", "eth0", "nodad"],
                   check=True)  # fmt: skip
    v4, _ = host_listener(str(manager.preparer.network.gateway), router_port)
    v6, _ = host_listener("fd00:6::1", router_port)
    client = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
        "s.settimeout(3)\n"
        "try:\n"
        "    s.connect((sys.argv[1], int(sys.argv[2]))); print(s.recv(64).decode().strip())\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    argv = [*exec_in, sys.executable, "-c", client]

    def ask(address: str) -> str:
        done = subprocess.run(
            [*argv, address, str(router_port)], capture_output=True, text=True, timeout=20
        )
        return done.stdout.strip()

    try:
        assert ask(str(manager.preparer.network.gateway)) == "host"  # the router's port, IPv4
        assert ask("fd00:6::1") in ("TimeoutError", "OSError")  # dropped, over IPv6
    finally:
        v4.close()
        v6.close()
        subprocess.run(["ip", "-6", "addr", "del", "fd00:6::1/64", "dev", bridge], check=False)
        _ipv6_knob(bridge).write_text("1")


def test_a_nameserver_is_open_on_port_53_only(tmp_path: Path, world: World) -> None:
    # At the network level (no runc needed): a container's netns asks a
    # nameserver the policy names, on a private network it otherwise blocks.
    tag = secrets.token_hex(3)
    dns = IPv4Network(f"{world.private.address}/32").network_address
    net = HostNetwork(
        tmp_path / "net",
        f"pd{tag}",
        IPv4Network(f"10.{secrets.choice(range(150, 200))}.{secrets.randbelow(256)}.0/24"),
        f"pd_{tag}",
        policy=PolicySettings(dns_servers=(dns,)),
    )
    hosts = Hosts(f"pd{tag}")
    try:
        net.setup()
        hosts.servers.start(world.private.netns, world.private.address, 53, "dns")
        probe = net.attach("probe")
        client = (
            "import socket, sys\n"
            "try:\n"
            "    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
            "    print(c.makefile().readline().strip())\n"
            "except OSError as exc:\n"
            "    print(type(exc).__name__)\n"
        )
        argv = ["ip", "netns", "exec", probe.netns_name, sys.executable, "-c", client]
        ask = [*argv, world.private.address]
        answer = subprocess.run([*ask, "53"], capture_output=True, text=True).stdout
        assert answer.split()[:1] == ["dns"]
        refused = subprocess.run([*ask, str(PORT)], capture_output=True, text=True).stdout
        assert refused.strip() == "ConnectionRefusedError"
    finally:
        hosts.cleanup()
        net.teardown()
