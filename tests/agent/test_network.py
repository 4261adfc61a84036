"""Container networking against the real kernel: bridge, netns, veth, nftables.

Every test gets its own bridge, subnet and nft table (random names), so runs
in parallel with other helpers' tests never meet. Traffic goes only to
addresses inside namespaces and links these tests create, and to loopback.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from runtime_agent.host.errors import Conflict, NetworkError
from runtime_agent.net import links
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.net.policy import PolicySettings
from runtime_agent.wire import PortBinding
from tests.support.netns_servers import NamespaceServers
from tests.support.other_hosts import OtherHost, linked_host
from tests.support.processes import free_port

pytestmark = pytest.mark.root

CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
    print(c.makefile().readline().strip())
"""


def random_subnet() -> IPv4Network:
    return IPv4Network(f"10.{secrets.choice(range(200, 256))}.{secrets.randbelow(256)}.0/24")


def fetch(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=3) as c:
        return c.makefile().readline().strip()


def fetch_from_netns(ns: str, host: str, port: int) -> str:
    argv = ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, host, str(port)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def answer_once(listener: socket.socket, data: bytes) -> None:
    """Answer one connection on a host socket, from a thread that cannot hang."""
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(data)
        except OSError:
            pass  # nobody came (the point of some tests) or the socket closed

    threading.Thread(target=serve, daemon=True).start()


def nft_tables() -> list[str]:
    return subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout.splitlines()


def publish_comments(table: str) -> list[str]:
    out = subprocess.run(
        ["nft", "-j", "list", "chain", "ip", table, "publish"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(item["rule"]["comment"] for item in json.loads(out)["nftables"] if "rule" in item)


def link_names() -> set[str]:
    with IPRoute() as ipr:
        return {str(link.get("ifname")) for link in ipr.get_links()}


@pytest.fixture
def params(tmp_path: Path) -> dict:
    suffix = secrets.token_hex(3)
    return {
        "state_dir": tmp_path / "net",
        "bridge": f"pt{suffix}",
        "subnet": random_subnet(),
        "nft_table": f"pt_{suffix}",
    }


@pytest.fixture
def net(params: dict) -> Iterator[HostNetwork]:
    hn = HostNetwork(**params)
    try:
        hn.setup()
        yield hn
    finally:
        hn.teardown()


@pytest.fixture
def servers() -> Iterator[NamespaceServers]:
    s = NamespaceServers()
    yield s
    s.stop()


def test_two_containers_of_one_app_get_distinct_addresses_and_reach_each_other(
    net: HostNetwork, servers: NamespaceServers
) -> None:
    alice, bob = net.attach("alice", group="shop"), net.attach("bob", group="shop")
    assert alice.address != bob.address
    assert {alice.address, bob.address} <= set(map(str, net.subnet.hosts()))
    assert alice.gateway == bob.gateway == str(net.subnet.network_address + 1)
    assert os.path.exists(alice.netns_path) and alice.netns_path.endswith(alice.netns_name)

    servers.start(bob.netns_name, bob.address, 8000, "bob")
    assert fetch_from_netns(alice.netns_name, bob.address, 8000) == f"bob {alice.address}"
    # (The host's own ports, other apps and the rest: tests/agent/test_network_policy.py.)


def test_attach_is_idempotent_and_survives_a_new_agent(
    net: HostNetwork, params: dict, servers: NamespaceServers
) -> None:
    first = net.attach("carol")
    servers.start(first.netns_name, first.address, 8000, "carol")
    assert net.attach("carol") == first

    restarted = HostNetwork(**params)
    restarted.setup()
    assert restarted.attachments() == {"carol": first}
    assert restarted.attach("carol") == first
    assert restarted.attach("dave").address != first.address
    # Re-attaching did not disturb the running server's network.
    assert fetch(first.address, 8000) == f"carol {first.gateway}"


def test_an_attach_that_changes_nothing_does_not_rewrite_the_state(
    net: HostNetwork, params: dict
) -> None:
    state_file = params["state_dir"] / "state.json"
    ivan = net.attach("ivan")
    written = state_file.stat().st_ino  # every write is a rename: a new inode
    assert net.attach("ivan") == ivan
    net.publish("ivan", ivan.address, [])
    assert state_file.stat().st_ino == written
    net.detach("ivan")
    assert state_file.stat().st_ino != written
    assert "ivan" not in json.loads(state_file.read_text())["attachments"]


def test_concurrent_attaches_in_threads_get_distinct_addresses(net: HostNetwork) -> None:
    names = [f"c{i}" for i in range(8)]
    errors: list[BaseException] = []

    def attach(name: str) -> None:
        try:
            net.attach(name)
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=attach, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    addresses = [a.address for a in net.attachments().values()]
    assert sorted(net.attachments()) == names
    assert len(set(addresses)) == len(names)


def test_detach_releases_the_address_and_removes_veth_and_netns(net: HostNetwork) -> None:
    erin = net.attach("erin")
    assert erin.host_veth in link_names()
    net.detach("erin")
    assert net.attachments() == {}
    assert erin.host_veth not in link_names()
    assert not os.path.exists(erin.netns_path)
    net.detach("erin")  # idempotent

    # Released addresses are not handed out again straight away, but are free again.
    others = [net.attach(f"f{i}") for i in range(3)]
    assert erin.address not in {a.address for a in others}


def test_a_published_port_answers_on_loopback_and_on_the_container_address(
    net: HostNetwork, servers: NamespaceServers
) -> None:
    web = net.attach("web")
    servers.start(web.netns_name, "0.0.0.0", 9000, "web")
    host_port = free_port("0.0.0.0")
    net.publish("web", web.address, [PortBinding(container_port=9000, host_port=host_port)])
    net.publish("web", web.address, [PortBinding(container_port=9000, host_port=host_port)])

    # From loopback the source is masqueraded to the gateway, or the reply could not route.
    assert fetch("127.0.0.1", host_port) == f"web {web.gateway}"
    assert fetch(web.address, 9000) == f"web {web.gateway}"
    assert publish_comments(net.nft_table) == ["web"]


def test_attach_with_ports_publishes_them_and_refuses_a_taken_one(
    net: HostNetwork, servers: NamespaceServers
) -> None:
    host_port = free_port("0.0.0.0")
    binding = PortBinding(container_port=9000, host_port=host_port)
    judy = net.attach("judy", [binding])
    servers.start(judy.netns_name, "0.0.0.0", 9000, "judy")
    assert fetch("127.0.0.1", host_port) == f"judy {judy.gateway}"
    assert publish_comments(net.nft_table) == ["judy"]
    assert net.attach("judy", [binding]) == judy  # idempotent

    with pytest.raises(Conflict):
        net.attach("kim", [binding])
    assert publish_comments(net.nft_table) == ["judy"]
    assert "kim" not in net.published()


def test_an_attach_that_fails_after_its_rules_went_in_records_them_for_the_detach(
    net: HostNetwork,
) -> None:
    links.delete_link(net.bridge)  # plumbing fails: the veth has no bridge to join
    with pytest.raises(NetworkError):
        net.attach("liam", [PortBinding(container_port=9000, host_port=free_port("0.0.0.0"))])
    assert "liam" in net.published()
    assert publish_comments(net.nft_table) == ["liam"]
    net.detach("liam")
    assert publish_comments(net.nft_table) == []


@pytest.fixture
def other_host(params: dict) -> Iterator[OtherHost]:
    """Another host: a netns linked to ours by a veth on its own /30."""
    link = IPv4Network(f"10.199.{secrets.randbelow(256)}.{secrets.randbelow(64) * 4}/30")
    ns, host_end = f"{params['bridge']}-other", f"{params['bridge']}o"
    try:
        yield linked_host(ns, host_end, link)
    finally:
        links.delete_link(host_end)
        links.remove_netns(ns)


def test_a_published_port_answers_a_client_on_another_host(
    net: HostNetwork, servers: NamespaceServers, other_host: OtherHost
) -> None:
    web = net.attach("web")
    servers.start(web.netns_name, "0.0.0.0", 9000, "web")
    host_port = free_port("0.0.0.0")
    net.publish("web", web.address, [PortBinding(container_port=9000, host_port=host_port)])

    # The container sees the real client address: DNAT, not a proxy.
    assert fetch_from_netns(other_host.netns, other_host.via, host_port) == (
        f"web {other_host.address}"
    )


def test_containers_reach_other_hosts_behind_the_host_address(
    params: dict, servers: NamespaceServers, other_host: OtherHost
) -> None:
    # The other host sits on a private network, closed to containers unless
    # the allow-list names it (tests/agent/test_network_policy.py).
    allowed = PolicySettings(allowed=(IPv4Network(f"{other_host.address}/32"),))
    net = HostNetwork(**params, policy=allowed)
    try:
        net.setup()
        builder = net.attach("builder")
        servers.start(other_host.netns, other_host.address, 8080, "mirror")
        # Masqueraded: the other host sees our host, never the private subnet.
        assert fetch_from_netns(builder.netns_name, other_host.address, 8080) == (
            f"mirror {other_host.via}"
        )
    finally:
        net.teardown()


def test_it_refuses_a_host_port_another_container_published(net: HostNetwork) -> None:
    a, b = net.attach("a"), net.attach("b")
    host_port = free_port("0.0.0.0")
    net.publish("a", a.address, [PortBinding(container_port=80, host_port=host_port)])
    with pytest.raises(Conflict, match="already published by a"):
        net.publish("b", b.address, [PortBinding(container_port=81, host_port=host_port)])
    with pytest.raises(Conflict):
        net.publish(
            "b",
            b.address,
            [PortBinding(container_port=81, host_port=host_port, host_ip="127.0.0.1")],
        )
    # Another protocol on the same number is a different port.
    net.publish(
        "b", b.address, [PortBinding(container_port=81, host_port=host_port, protocol="udp")]
    )
    assert publish_comments(net.nft_table) == ["a", "b"]


def _mac(ifname: str) -> str:
    with IPRoute() as ipr:
        (link,) = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])
        return str(link.get_attr("IFLA_ADDRESS"))


def test_the_bridge_keeps_its_mac_when_a_container_leaves(net: HostNetwork) -> None:
    # A bridge left to itself takes its lowest port's MAC and changes it when
    # that port goes: the other containers' ARP entries for the gateway go stale.
    before = _mac(net.bridge)
    for cid in ("m1", "m2", "m3", "m4"):
        net.attach(cid)
    assert _mac(net.bridge) == before
    for cid in ("m1", "m2", "m3"):
        net.detach(cid)
        assert _mac(net.bridge) == before


def test_one_apps_old_and_new_container_share_a_port_that_switches_when_the_old_goes(
    net: HostNetwork, params: dict, servers: NamespaceServers
) -> None:
    host_port = free_port("0.0.0.0")
    binding = PortBinding(container_port=9000, host_port=host_port)
    old = net.attach("shop-v1", [binding], group="shop")
    servers.start(old.netns_name, "0.0.0.0", 9000, "v1")
    new = net.attach("shop-v2", [binding], group="shop")  # a redeploy of the same app
    servers.start(new.netns_name, "0.0.0.0", 9000, "v2")
    # The first holder keeps it (the new release may yet fail), also after a restart of the agent.
    assert fetch("127.0.0.1", host_port) == f"v1 {old.gateway}"
    HostNetwork(**params).setup()  # the whole table rendered again from the state
    assert fetch("127.0.0.1", host_port) == f"v1 {old.gateway}"
    with pytest.raises(Conflict, match="already published by shop-v"):
        net.attach("other-app", [binding], group="other")

    net.detach("shop-v1")
    assert fetch("127.0.0.1", host_port) == f"v2 {new.gateway}"
    assert publish_comments(net.nft_table) == ["shop-v2"]


def test_it_refuses_a_host_port_a_host_process_listens_on(net: HostNetwork) -> None:
    a = net.attach("a")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(Conflict, match="host process"):
            net.publish("a", a.address, [PortBinding(container_port=80, host_port=port)])
    assert publish_comments(net.nft_table) == []


def test_unpublish_removes_exactly_that_containers_rules(
    net: HostNetwork, servers: NamespaceServers
) -> None:
    a, b = net.attach("a"), net.attach("b")
    servers.start(b.netns_name, "0.0.0.0", 9000, "b")
    port_a1, port_a2, port_b = free_port("0.0.0.0"), free_port("0.0.0.0"), free_port("0.0.0.0")
    net.publish("a", a.address, [PortBinding(80, port_a1), PortBinding(81, port_a2)])
    net.publish("b", b.address, [PortBinding(9000, port_b)])
    assert publish_comments(net.nft_table) == ["a", "a", "b"]

    net.unpublish("a")
    net.unpublish("a")
    assert publish_comments(net.nft_table) == ["b"]
    assert fetch("127.0.0.1", port_b) == f"b {b.gateway}"


def test_published_ports_survive_an_agent_restart(
    net: HostNetwork, params: dict, servers: NamespaceServers
) -> None:
    web = net.attach("web")
    servers.start(web.netns_name, "0.0.0.0", 9000, "web")
    host_port = free_port("0.0.0.0")
    net.publish("web", web.address, [PortBinding(9000, host_port)])

    restarted = HostNetwork(**params)
    restarted.setup()
    assert fetch("127.0.0.1", host_port) == f"web {web.gateway}"
    assert restarted.published()["web"].bindings == (PortBinding(9000, host_port),)


def test_detach_also_unpublishes(net: HostNetwork) -> None:
    web = net.attach("web")
    net.publish("web", web.address, [PortBinding(9000, free_port("0.0.0.0"))])
    net.detach("web")
    assert publish_comments(net.nft_table) == []
    assert net.published() == {}


def test_teardown_leaves_no_bridge_netns_veth_or_table(params: dict) -> None:
    hn = HostNetwork(**params)
    hn.setup()
    atts = [hn.attach(name) for name in ("x", "y")]
    hn.publish("x", atts[0].address, [PortBinding(80, free_port("0.0.0.0"))])
    assert f"table ip {hn.nft_table}" in nft_tables()

    hn.teardown()
    names = link_names()
    assert hn.bridge not in names
    assert not {a.host_veth for a in atts} & names
    assert not [ns for ns in links.list_netns() if ns.startswith(hn.bridge)]
    assert f"table ip {hn.nft_table}" not in nft_tables()
    assert f"table bridge {hn.nft_table}" not in nft_tables()
    assert hn.attachments() == {}
    hn.teardown()  # idempotent


def test_a_container_cannot_reach_services_on_host_loopback(net: HostNetwork) -> None:
    # route_localnet on the bridge (needed for loopback clients of published
    # ports) must not let a container root send packets for 127.0.0.1 to the
    # gateway and reach, say, the agent API bound to loopback.
    mallory = net.attach("mallory")
    in_ns = ["ip", "netns", "exec", mallory.netns_name]
    for argv in (
        ["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"],
        ["sysctl", "-q", "-w", "net.ipv4.conf.eth0.route_localnet=1"],
        ["ip", "route", "add", "127.0.0.0/8", "via", mallory.gateway, "dev", "eth0"],
    ):
        subprocess.run(in_ns + argv, check=True, timeout=10)
    with socket.socket() as secret:
        secret.bind(("127.0.0.1", 0))
        secret.listen(1)
        port = secret.getsockname()[1]
        answer_once(secret, b"secret\n")
        with pytest.raises(subprocess.CalledProcessError) as failed:
            fetch_from_netns(mallory.netns_name, "127.0.0.1", port)
        assert "timed out" in failed.value.stderr  # dropped, not refused


def test_attach_repairs_a_half_made_attachment(net: HostNetwork, servers: NamespaceServers) -> None:
    grace = net.attach("grace")
    links.delete_link(grace.host_veth)  # as if the agent died mid-attach

    assert net.attach("grace") == grace
    servers.start(grace.netns_name, grace.address, 8000, "grace")
    assert fetch(grace.address, 8000) == f"grace {grace.gateway}"


def test_attach_replaces_a_host_veth_left_over_with_a_lost_netns(
    net: HostNetwork, servers: NamespaceServers
) -> None:
    heidi = net.attach("heidi")
    # As if the agent died with the pair made but its netns since removed and
    # the host end still there (here: a pair whose other end is on the host).
    links.remove_netns(heidi.netns_name)
    links.delete_link(heidi.host_veth)
    peer = f"vp{secrets.token_hex(5)}"
    ip_link = ["ip", "link", "add", heidi.host_veth, "type", "veth", "peer", "name", peer]
    subprocess.run(ip_link, check=True, timeout=10)

    assert net.attach("heidi") == heidi
    servers.start(heidi.netns_name, heidi.address, 8000, "heidi")
    assert fetch(heidi.address, 8000) == f"heidi {heidi.gateway}"
    assert peer not in link_names()  # the leftover pair went as a whole


def test_setup_moves_the_bridge_to_a_new_subnet_when_nothing_is_attached(params: dict) -> None:
    first = HostNetwork(**params)
    try:
        first.setup()
        moved = HostNetwork(**{**params, "subnet": random_subnet()})
        moved.setup()
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=moved.bridge)[0]
            addrs = [a.get("address") for a in ipr.get_addr(index=idx, family=2)]
        assert addrs == [str(moved.gateway)]
    finally:
        first.teardown()


def test_setup_refuses_a_new_subnet_while_containers_are_attached(
    net: HostNetwork, params: dict
) -> None:
    net.attach("heidi")
    other = random_subnet()
    while other == net.subnet:
        other = random_subnet()
    with pytest.raises(Conflict, match="subnet changed"):
        HostNetwork(**{**params, "subnet": other}).setup()


def test_a_port_published_on_one_host_address_answers_only_there(
    net: HostNetwork, servers: NamespaceServers
) -> None:
    web = net.attach("web")
    servers.start(web.netns_name, "0.0.0.0", 9000, "web")
    host_port = free_port("0.0.0.0")
    net.publish("web", web.address, [PortBinding(9000, host_port, host_ip="127.0.0.1")])

    assert fetch("127.0.0.1", host_port) == f"web {web.gateway}"
    # The gateway is a host address too, but not the one published on.
    with pytest.raises(ConnectionRefusedError):
        fetch(web.gateway, host_port)


def test_containers_reach_published_ports_on_the_host_address(
    net: HostNetwork, servers: NamespaceServers
) -> None:
    # Of one app: another app's container is refused (test_network_policy.py).
    web, client = net.attach("web", group="shop"), net.attach("client", group="shop")
    servers.start(web.netns_name, "0.0.0.0", 9000, "web")
    host_port = free_port("0.0.0.0")
    net.publish("web", web.address, [PortBinding(9000, host_port)])

    assert fetch_from_netns(client.netns_name, client.gateway, host_port) == f"web {web.gateway}"
    # Its own published port too (the answer must come back through the host).
    assert fetch_from_netns(web.netns_name, web.gateway, host_port) == f"web {web.gateway}"


def test_publish_rebuilds_a_table_someone_deleted(
    net: HostNetwork, servers: NamespaceServers
) -> None:
    web = net.attach("web")
    servers.start(web.netns_name, "0.0.0.0", 9000, "web")
    net.publish("web", web.address, [PortBinding(9000, free_port("0.0.0.0"))])
    subprocess.run(["nft", "delete", "table", "ip", net.nft_table], check=True)

    host_port = free_port("0.0.0.0")
    net.publish("web", web.address, [PortBinding(9000, host_port)])
    assert fetch("127.0.0.1", host_port) == f"web {web.gateway}"
