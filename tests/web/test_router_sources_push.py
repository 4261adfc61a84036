"""The control plane pushes router sources to running agents
(paas/hosts/router_push.py): a host in a network namespace of its own
(tests/support/netns_hosts.py) runs the real agent daemon, joined as a host
that got no router sources at its join (as hosts that joined before the
join handed them out). What the agent applies is read back from its API
and from the nftables set in its namespace; that the set decides who a
route port answers is tests/agent/test_route_ports.py's part."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from paas.applications.models import AuditEntry
from paas.hosts.models import Host
from paas.hosts.router_push import hosts_router_sources_sync
from paas.hosts.services import host_join, hosts_heartbeat_all, join_token_create
from paas.hosts.tasks import heartbeat
from runtime_agent.host.cmd import output
from tests.support.agent_harness import AgentProcess, cleanup
from tests.support.netns_hosts import Lan, lan
from tests.support.processes import wait_until
from tests.web.deploy_support import agent_root

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.root]


@pytest.fixture
def network() -> Iterator[Lan]:
    with lan() as net:
        yield net


@pytest.fixture
def make_agent(network: Lan) -> Iterator[Any]:
    """Agents on hosts of the LAN, stopped and cleaned up after the test."""
    made: list[AgentProcess] = []

    def make(**env: str) -> AgentProcess:
        host = network.add_host()
        root = stack.enter_context(agent_root())
        agent = AgentProcess.fresh(root, **env)
        agent.netns, agent.listen_host = host.netns, str(host.address)
        made.append(agent)
        return agent

    with contextlib.ExitStack() as stack:
        try:
            yield make
        finally:
            for agent in made:
                cleanup(agent)


def _joined(agent: AgentProcess, name: str = "h1", *, start: bool = True) -> Host:
    """Joined through the join service; the agent runs with the credential."""
    _, raw = join_token_create(user=None, note="test")
    host, credential = host_join(raw_token=raw, name=name, agent_url=agent.url,
                                 tls_fingerprint=agent.fingerprint)  # fmt: skip
    agent.token = credential
    if start:
        agent.start()
    return host


def _agent_says(agent: AgentProcess) -> dict[str, Any]:
    status, said = agent.request("GET", "/v1/router-sources")
    assert status == 200, said
    return dict(said)


def _nft_set(agent: AgentProcess) -> list[str]:
    """The router_sources set in the agent's namespace, as nft lists it."""
    listed = output([*agent.enter_netns(), "nft", "-j", "list", "set", "ip", agent.nft_table,
                     "router_sources"])  # fmt: skip
    [body] = [i["set"] for i in json.loads(listed)["nftables"] if "set" in i]
    elements = body.get("elem", [])
    return [e if isinstance(e, str) else "{addr}/{len}".format(**e["prefix"]) for e in elements]


def _pushes(name: str) -> int:
    return AuditEntry.objects.filter(action="host.router_sources", target=name).count()


def test_a_host_without_router_sources_gets_them_at_the_next_heartbeat(
    make_agent: Any, network: Lan, settings: Any
) -> None:
    settings.PAAS_ROUTER_SOURCES = []
    agent = make_agent()
    _joined(agent)
    pid = agent.proc.pid if agent.proc else None
    assert _agent_says(agent)["in_effect"] == [] and _nft_set(agent) == []

    assert hosts_heartbeat_all()["h1"] == "ready"
    gateway = f"{network.gateway}/32"  # this machine's address on the hosts' LAN
    assert hosts_router_sources_sync() == {"h1": f"route ports answer {gateway}"}
    assert _agent_says(agent)["in_effect"] == [gateway]
    assert _nft_set(agent) == [str(network.gateway)]
    assert (agent.root / "router_sources").read_text().strip() == gateway
    assert Host.objects.get(name="h1").router_sources == [gateway]
    # Recorded as accepted: the next heartbeat leaves it alone.
    assert hosts_router_sources_sync() == {}
    assert _pushes("h1") == 1

    # The operator moves the router (and restarts the control plane with the setting).
    settings.PAAS_ROUTER_SOURCES = ["192.0.2.0/28", "198.51.100.7/32"]
    assert hosts_router_sources_sync() == {"h1": "route ports answer 192.0.2.0/28, 198.51.100.7/32"}
    assert _nft_set(agent) == ["192.0.2.0/28", "198.51.100.7"]
    assert agent.proc is not None and agent.proc.pid == pid and agent.proc.poll() is None
    assert _pushes("h1") == 2


def test_the_operator_pushes_now_and_sees_what_each_host_took(
    make_agent: Any, settings: Any
) -> None:
    settings.PAAS_ROUTER_SOURCES = ["192.0.2.0/28"]
    _joined(make_agent(), "h1")
    pinned = make_agent(PAAS_AGENT_ROUTER_SOURCES="198.51.100.7")
    _joined(pinned, "h2")
    out, err = io.StringIO(), io.StringIO()
    call_command("host_router_sources", "--all", stdout=out, stderr=err)
    said = out.getvalue()
    assert "h1: route ports answer 192.0.2.0/28\n" in said, said
    # The host's own setting wins, and the operator is told so.
    assert "h2: PAAS_AGENT_ROUTER_SOURCES is set on this host and wins: route ports " \
        "answer 198.51.100.7/32." in said, said  # fmt: skip
    assert _nft_set(pinned) == ["198.51.100.7"]
    assert (pinned.root / "router_sources").read_text().strip() == "192.0.2.0/28"
    assert AuditEntry.objects.get(action="host.router_sources", target="h2").result == "failed"
    # Taken as accepted (pushing again changes nothing): no push every heartbeat.
    hosts_heartbeat_all()
    assert hosts_router_sources_sync() == {}

    with pytest.raises(CommandError, match="No joined host named nope"):
        call_command("host_router_sources", "nope")
    with pytest.raises(CommandError, match="Name the hosts, or give --all"):
        call_command("host_router_sources")


def test_a_host_that_does_not_answer_is_reported_and_left_for_later(
    make_agent: Any, settings: Any
) -> None:
    settings.PAAS_ROUTER_SOURCES = ["192.0.2.0/28"]
    host = _joined(make_agent(), start=False)
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 host"):
        call_command("host_router_sources", "h1", stderr=err)
    assert "h1: not pushed: The agent at https://" in err.getvalue()
    host.refresh_from_db()
    assert host.router_sources is None  # still due


def test_a_host_that_cannot_take_a_push_is_tried_again_later_and_later(
    make_agent: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Its heartbeat worked, then its agent stopped: the sync's push fails.
    It is tried again 2, 4 ... heartbeats later (capped), with one warning
    per try, not at every heartbeat; a push that works clears the count."""
    settings.PAAS_ROUTER_SOURCES = ["192.0.2.0/28"]
    settings.PAAS_HEARTBEAT_SECONDS = 10.0
    settings.PAAS_ROUTER_SOURCES_BACKOFF_MAX_S = 60.0
    agent = make_agent()
    host = _joined(agent)
    assert hosts_heartbeat_all()["h1"] == "ready"
    agent.terminate()
    t0 = timezone.now()

    def sync_at(seconds: float) -> dict[str, str]:
        return hosts_router_sources_sync(now=t0 + timedelta(seconds=seconds))

    caplog.set_level(logging.WARNING, logger="paas.hosts.router_push")
    tries = {0.0: 20, 20.0: 40, 60.0: 60, 120.0: 60}  # when -> the wait after it
    for at in (0.0, 10.0, 20.0, 30.0, 50.0, 60.0, 110.0, 120.0, 170.0):
        said = sync_at(at)
        host.refresh_from_db()
        if at not in tries:
            assert said == {}, at  # backing off: not tried, not logged
            continue
        assert said["h1"].startswith("not pushed: The agent at https://"), said
        assert host.router_sources_retry_at == t0 + timedelta(seconds=at + tries[at])
    assert host.router_sources_failures == 4
    assert host.router_sources_error.startswith("The agent at https://")
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "paas.hosts.router_push" and r.levelno == logging.WARNING]  # fmt: skip
    assert len(warnings) == 4, warnings
    assert "h1: router sources not pushed (1 failure(s) in a row; next try in 20 s)" in warnings[0]
    assert host.router_sources is None

    agent.start()
    assert sync_at(179.0) == {}  # still waiting
    assert sync_at(180.0) == {"h1": "route ports answer 192.0.2.0/28"}
    host.refresh_from_db()
    assert (host.router_sources, host.router_sources_failures) == (["192.0.2.0/28"], 0)
    assert (host.router_sources_error, host.router_sources_retry_at) == ("", None)
    assert _nft_set(agent) == ["192.0.2.0/28"]
    assert sync_at(181.0) == {}  # in sync: nothing to do


def test_a_joined_host_gets_them_from_the_worker_once_its_agent_answers(
    make_agent: Any, network: Lan, workers: Any
) -> None:
    """The join enqueues a push; the agent starts after the join (as the
    operator runs it), so the task retries until it answers."""
    workers.start()
    agent = make_agent()
    host = _joined(agent, start=False)
    agent.start()

    def pushed() -> bool:
        host.refresh_from_db()
        return host.router_sources is not None

    wait_until(pushed, timeout_s=120, what="the push after the join")
    assert host.router_sources == [f"{network.gateway}/32"]
    assert _nft_set(agent) == [str(network.gateway)]

    # A host with no record (as one that joined before pushes): the
    # heartbeat task pushes to it.
    Host.objects.filter(pk=host.pk).update(router_sources=None)
    heartbeat.delay()
    wait_until(pushed, timeout_s=120, what="the heartbeat's push")
    assert host.router_sources == [f"{network.gateway}/32"]
    assert _pushes("h1") == 2
