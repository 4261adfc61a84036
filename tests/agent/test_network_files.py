"""Pieces of container networking that need no root: address allocation,
/etc files and the rendered nft ruleset."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from runtime_agent.host.errors import Conflict, InvalidRequest, NetworkError
from runtime_agent.net import ipam, ports
from runtime_agent.net.bridge import HostNetwork, write_etc_files
from runtime_agent.net.state import NetStateStore
from runtime_agent.wire import PortBinding

SUBNET = IPv4Network("10.250.1.0/29")  # gateway .1, containers .2 to .6


def test_it_never_hands_out_the_gateway_or_an_address_in_use() -> None:
    assert ipam.allocate(SUBNET, set()) == IPv4Address("10.250.1.2")
    assert ipam.allocate(SUBNET, {"10.250.1.2", "10.250.1.3"}) == IPv4Address("10.250.1.4")


def test_it_does_not_reuse_a_released_address_straight_away() -> None:
    # .2 was just released (last handed out was .3): the next one is .4, not .2.
    assert ipam.allocate(SUBNET, {"10.250.1.3"}, last="10.250.1.3") == IPv4Address("10.250.1.4")
    # ...but wraps around to it when the end of the subnet is reached.
    assert ipam.allocate(SUBNET, {"10.250.1.3"}, last="10.250.1.6") == IPv4Address("10.250.1.2")


def test_it_says_so_when_the_subnet_is_full() -> None:
    full = {f"10.250.1.{i}" for i in range(2, 7)}
    with pytest.raises(NetworkError, match="no free address"):
        ipam.allocate(SUBNET, full)


def test_state_transactions_from_many_threads_lose_no_update(tmp_path: Path) -> None:
    store = NetStateStore(tmp_path / "net")

    def bump(i: int) -> None:
        with store.transaction() as state:
            state["attachments"][f"c{i}"] = {"n": len(state["attachments"])}

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    attachments = store.read()["attachments"]
    assert sorted(v["n"] for v in attachments.values()) == list(range(20))
    # No temporary file is left behind by the atomic writes.
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == ["state.json", "state.lock"]


def test_it_writes_hosts_with_localhost_and_the_hostname(tmp_path: Path) -> None:
    hosts, _ = write_etc_files(tmp_path, "web-1.example", "10.250.1.2")
    text = hosts.read_text()
    assert "127.0.0.1\tlocalhost\n" in text
    assert "10.250.1.2\tweb-1.example web-1\n" in text


def test_it_copies_the_hosts_nameservers_but_not_loopback_ones(tmp_path: Path) -> None:
    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp.example\n")
    _, resolv = write_etc_files(tmp_path / "etc", "web", "10.250.1.2", host_resolv_conf=host)
    lines = resolv.read_text().splitlines()
    assert "nameserver 192.0.2.53" in lines
    assert "search corp.example" in lines
    assert not any("127.0.0.53" in line for line in lines)


def test_it_writes_a_fail_fast_resolv_conf_when_the_host_has_only_loopback_resolvers(
    tmp_path: Path,
) -> None:
    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 127.0.0.53\noptions edns0\n")
    _, resolv = write_etc_files(tmp_path / "etc", "web", "10.250.1.2", host_resolv_conf=host)
    text = resolv.read_text()
    assert "nameserver" not in text
    assert "options timeout:1 attempts:1" in text


def test_it_refuses_a_hostname_that_would_inject_lines(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        write_etc_files(tmp_path, "web\n10.0.0.1 bank.example", "10.250.1.2")


def test_each_published_rule_is_labelled_with_its_container() -> None:
    published = {
        "web": ports.Published("10.250.1.2", (PortBinding(8080, 18080),)),
        "db": ports.Published("10.250.1.3", (PortBinding(5432, 15432, host_ip="127.0.0.1"),)),
    }
    text = ports.render("pt_x", "ptx", SUBNET, published)
    assert 'tcp dport 18080 dnat to 10.250.1.2:8080 comment "web"' in text
    assert 'ip daddr 127.0.0.1 tcp dport 15432 dnat to 10.250.1.3:5432 comment "db"' in text


def test_it_refuses_the_same_host_port_twice_in_one_request() -> None:
    wanted = [PortBinding(80, 18080), PortBinding(81, 18080)]
    with pytest.raises(Conflict, match="twice"):
        ports.check_conflicts("web", wanted, {})


def test_it_refuses_a_protocol_it_cannot_publish() -> None:
    with pytest.raises(InvalidRequest, match="sctp"):
        ports.validate([PortBinding(80, 18080, protocol="sctp")])


def test_an_agent_never_claims_another_agents_namespaces(tmp_path: Path) -> None:
    pt = HostNetwork(tmp_path / "a", "pt", IPv4Network("10.250.2.0/24"), "pt")
    pt_a = HostNetwork(tmp_path / "b", "pt-a", IPv4Network("10.250.3.0/24"), "pt_a")
    mine, theirs = pt._netns_name("web"), pt_a._netns_name("web")
    assert pt.owns_netns(mine) and not pt.owns_netns(theirs)
    assert pt_a.owns_netns(theirs) and not pt_a.owns_netns(mine)
    assert pt._host_veth("web") != pt_a._host_veth("web")
    assert len(pt._host_veth("web")) <= 15


def test_it_wraps_around_a_large_subnet_without_touching_the_broadcast() -> None:
    big = IPv4Network("10.88.0.0/16")
    assert ipam.allocate(big, set(), last="10.88.255.253") == IPv4Address("10.88.255.254")
    assert ipam.allocate(big, set(), last="10.88.255.254") == IPv4Address("10.88.0.2")
