"""Two hosts, each a network namespace made by this test (tests/support/
netns_hosts.py), each with a real agent that joined through the real join
flow (``python -m runtime_agent.join`` run on the host, against the control
plane listening on the LAN), a real Celery worker, the real router (nginx)
and a real registry on the LAN. Instances of one app spread over both and
answer through the router, which reaches them at their host's address
(paas/hosts/upstreams.py).

Then a host is lost: its link removed and its agent SIGKILLed, so nothing on
it answers. The heartbeat marks it unreachable after PAAS_HOST_TIMEOUT_S,
its instance comes back on the other host, and the router keeps serving the
whole time. When the host returns (link back, agent restarted on the same
root) its stale container is removed and nothing is duplicated."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test.testcases import LiveServerThread

from paas.applications.models import App, ReleaseState
from paas.applications.releases import formation_scale
from paas.applications.services import app_create
from paas.builds.models import Build, BuildState
from paas.hosts.models import Host, HostState, Instance, InstanceState
from paas.hosts.pull_auth import pull_auth
from paas.hosts.reconcile import reconcile
from paas.hosts.services import hosts_heartbeat_all, join_token_create
from runtime_agent.host.cmd import run
from runtime_agent.net import links
from tests.support.agent_harness import REPO, AgentProcess, cleanup
from tests.support.netns_hosts import Lan, NetnsHost, lan, link_down, link_up
from tests.support.registry import TestRegistry, run_registry
from tests.support.router import TestRouter, run_router
from tests.web.deploy_support import (
    agent_for,
    agent_root,
    background_load,
    container_names,
    get,
    upload,
    use_registry_settings,
    wait_build_final,
    wait_for,
    wait_release,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(1500)]

HOST = "hello.localhost"
HOST_TIMEOUT_S = 2.0  # PAAS_HOST_TIMEOUT_S for this test (the default is 30)
# A request nginx sent on a kept-alive connection to the host just lost gets
# no answer and no reset: after this long it is retried on the surviving
# host (a GET, nothing sent back yet), and the lost one is marked failed.
READ_TIMEOUT_S = 3
BODIES = {f"Hello, world from hello-v1-web-{n}" for n in (1, 2)}


@pytest.fixture
def network() -> Iterator[Lan]:
    with lan() as net:
        yield net
    assert not {h.netns for h in net.hosts} & set(links.list_netns())
    assert not links.link_exists(net.bridge)


@pytest.fixture
def lan_registry(network: Lan, tmp_path: Path) -> Iterator[TestRegistry]:
    """The platform's registry on the LAN: the hosts pull from it there."""
    # Token auth like the platform's: agents get a pull token per create.
    with run_registry(tmp_path / "registry", address=str(network.gateway), token=True) as registry:
        yield registry


@pytest.fixture
def control_plane(network: Lan, settings: Any) -> Iterator[str]:
    """This process's Django, served on the LAN address for the hosts' join."""
    address = str(network.gateway)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, address]
    server = LiveServerThread(address, StaticLiveServerTestCase.static_handler)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    try:
        yield f"http://{address}:{server.port}"
    finally:
        server.terminate()


@pytest.fixture
def router(tmp_path: Path, settings: Any) -> Iterator[TestRouter]:
    settings.PAAS_ROUTER_READ_TIMEOUT = READ_TIMEOUT_S
    with run_router(tmp_path / "router") as running:
        yield running


def _join(agent: AgentProcess, control_plane: str, name: str) -> None:
    """What an operator runs on the new host: the agent's credential lands in
    its root, and the agent starts with it."""
    _, raw = join_token_create(user=None, note=f"test host {name}")
    env = {**os.environ, "PAAS_AGENT_ROOT": str(agent.root), "PYTHONPATH": str(REPO)}
    run([*agent.enter_netns(), sys.executable, "-m", "runtime_agent.join",
         "--control-plane", control_plane, "--join-token", raw, "--name", name,
         "--agent-url", agent.url], env=env, timeout=60)  # fmt: skip
    agent.token = (agent.root / "token").read_text().strip()
    agent.start()


def _agent_on(host: NetnsHost, registry: TestRegistry, root: Path) -> AgentProcess:
    agent = agent_for(registry, root)
    agent.netns, agent.listen_host = host.netns, str(host.address)
    return agent


def _instances() -> list[Instance]:
    return list(Instance.objects.select_related("host").order_by("index"))


def _beat() -> dict[str, str]:
    """What Celery beat does every PAAS_HEARTBEAT_SECONDS (a reconcile is
    enqueued for the worker when a host changes state)."""
    return hosts_heartbeat_all(reconcile_on_change=True)


def test_instances_spread_over_two_namespaced_hosts_and_move_when_one_is_lost(
    client: Any, alice: Any, workers: Any, settings: Any, network: Lan,
    lan_registry: TestRegistry, control_plane: str, router: TestRouter,
) -> None:  # fmt: skip
    registry_env = {
        "PAAS_REGISTRY": lan_registry.host,
        "PAAS_REGISTRY_USER": lan_registry.username or "",
        "PAAS_REGISTRY_PASSWORD": lan_registry.password or "",
        "PAAS_REGISTRY_CA": str(lan_registry.ca_file or ""),
        "PAAS_REGISTRY_TOKEN_KEY": str(lan_registry.token_key),
        "PAAS_REGISTRY_TOKEN_CERT": str(lan_registry.token_cert),
    }
    use_registry_settings(settings, registry_env)
    workers.env.update({**router.env, **registry_env, "PAAS_DRAIN_SECONDS": "0.5",
                        "PAAS_HEALTH_TIMEOUT_S": "60",
                        "PAAS_ROUTER_READ_TIMEOUT": str(READ_TIMEOUT_S)})  # fmt: skip
    settings.PAAS_HOST_TIMEOUT_S = HOST_TIMEOUT_S
    settings.PAAS_HEALTH_TIMEOUT_S = 60.0
    a, b = network.add_host(), network.add_host()
    with agent_root() as root_a, agent_root() as root_b:
        agents = {"a": _agent_on(a, lan_registry, root_a), "b": _agent_on(b, lan_registry, root_b)}
        try:
            for name, agent in agents.items():
                _join(agent, control_plane, name)
            workers.start()
            _two_hosts(client, alice, network, b, agents, router.http_port)
        finally:
            for agent in agents.values():
                cleanup(agent)
    # Nothing of theirs is left: no container namespace, no host namespace
    # (the LAN fixture removes those; checked there).
    assert not [n for n in links.list_netns() for ag in agents.values() if n.startswith(ag.bridge)]


PROBE = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
    "except OSError as e:\n"
    "    sys.exit(f'refused: {e}')\n"
)


def _connects(agent: AgentProcess, container: str, address: str, port: int) -> bool:
    """Whether ``container`` can open a TCP connection to address:port."""
    status, items = agent.request("POST", f"/v1/containers/{container}/exec", {
        "cmd": ["python3", "-c", PROBE, address, str(port)], "timeout_s": 30,
    })  # fmt: skip
    assert status == 200, items
    (code,) = [item["exit_code"] for item in items if "exit_code" in item]
    return bool(code == 0)


def _prefetch(
    pool: ThreadPoolExecutor, agent: AgentProcess, host_name: str, build: Build
) -> Future[tuple[int, Any]]:
    """Host ``host_name`` pulls the build's image (the stack's layers: the
    longest wait of this test) on a thread, while the other host pulls it
    for v1, rather than after, when the app scales onto it. What the test
    checks (the spread, the loss, the return) comes after either way; the
    pull a create makes with its token is test_deploy_registry_access's."""
    build = wait_build_final(build)
    assert build.state == BuildState.SUCCEEDED, build.error
    auth = pull_auth(app=build.app, image=build.digest_ref, host=Host.objects.get(name=host_name))
    assert auth is not None and auth.token
    body = {"ref": build.digest_ref,
            "registry_auth": {"registry": auth.registry, "token": auth.token}}  # fmt: skip
    return pool.submit(agent.request, "POST", "/v1/images/pull", body, timeout=600)


def _still_denied_by_default(network: Lan, agents: dict[str, AgentProcess]) -> None:
    """Route ports open a way in for the router, not for tenants: a
    container reaches its own app's route port (the probe works), but not
    the other host's address nor its own host's other services (the agent).
    Nor does another machine on the LAN: the hosts answer their route
    ports for the router's address only (given at the join)."""
    one, two = Instance.objects.select_related("host").order_by("index")
    here, there = agents[one.host.name], agents[two.host.name]
    assert one.route_port is not None and two.route_port is not None
    assert _connects(here, one.container_name, here.listen_host, one.route_port)
    assert not _connects(here, one.container_name, there.listen_host, two.route_port)
    assert not _connects(here, one.container_name, here.listen_host, here.port)
    for agent in agents.values():
        assert (agent.root / "router_sources").read_text().split() == [f"{network.gateway}/32"]
    stranger = network.add_host()  # a machine on the LAN with no business there
    for address, route_port in ((here.listen_host, one.route_port),
                                (there.listen_host, two.route_port)):  # fmt: skip
        assert "Connection refused" in _from_netns(stranger.netns, address, route_port)


def _from_netns(netns: str, address: str, port: int) -> str:
    """What a TCP client in ``netns`` gets from address:port ("answered",
    or the error)."""
    done = run(["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, address, str(port)],
               check=False, timeout=30)  # fmt: skip
    return "answered" if done.returncode == 0 else done.stderr.decode()


def _two_hosts(client: Any, alice: Any, network: Lan, lost: NetnsHost,
               agents: dict[str, AgentProcess], port: int) -> None:  # fmt: skip
    assert _beat() == {"a": "ready", "b": "ready"}
    assert {h.agent_url for h in Host.objects.all()} == {ag.url for ag in agents.values()}
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    with ThreadPoolExecutor(1) as pool:
        prefetch = _prefetch(pool, agents["b"], "b", upload(client, alice, "hello"))
        v1 = wait_release("hello", 1, timeout_s=900)  # host a pulls the stack first
        assert v1.state == ReleaseState.CURRENT, v1.error
        status, pulled = prefetch.result(timeout=600)
        assert status == 200, pulled
    formation_scale(user=alice, app=app, process_type="web", count=2)
    wait_for(lambda: sum(i.healthy for i in _instances()) == 2, 600, "two healthy instances")
    assert sorted(i.host.name for i in _instances()) == ["a", "b"]
    # The router reaches each at its host's address, on its route port.
    assert {i.route_port is not None for i in _instances()} == {True}
    seen = wait_for(lambda: {get(port, HOST)[1].strip() for _ in range(20)} == BODIES, 30,
                    "both instances through the router")  # fmt: skip
    assert seen
    assert container_names(agents["b"]) == ["hello.v1.web.2"]
    _still_denied_by_default(network, agents)

    with background_load(port, HOST, duration_s=900) as load:
        bodies = load.bodies
        wait_for(lambda: bodies["Hello, world from hello-v1-web-2"] > 10, 30, "load on b")
        # Host b is lost: unplugged, and its agent killed (its containers
        # live on, unreachable, as on a machine cut off from the network).
        lost_at = time.monotonic()
        link_down(lost)
        unplugged_at = time.monotonic()
        agents["b"].kill()

        wait_for(lambda: _beat()["b"] == "unreachable", 120, "host b to be unreachable")
        unreachable_s = time.monotonic() - lost_at

        def moved() -> bool:  # by the reconcile the heartbeat enqueued
            now = _instances()
            return {i.host.name for i in now} == {"a"} and all(i.healthy for i in now)

        wait_for(moved, 300, "web.2 to come back on host a")
        moved_s = time.monotonic() - lost_at
        served = bodies["Hello, world from hello-v1-web-2"]
        wait_for(lambda: bodies["Hello, world from hello-v1-web-2"] > served + 10, 30,
                 "web.2 serving again, from host a")  # fmt: skip
        routed_s = time.monotonic() - lost_at
    report = load.report
    print(f"host lost -> unreachable in {unreachable_s:.1f} s, "
          f"instance healthy on the other host in {moved_s:.1f} s, "
          f"serving through the router in {routed_s:.1f} s (PAAS_HOST_TIMEOUT_S="
          f"{HOST_TIMEOUT_S:g}); load: {report.ok} ok, {report.failed} failed, "
          f"{report.retries} retries, slowest {max(report.latencies_s):.1f} s")  # fmt: skip
    # The router kept serving from the surviving host the whole time. The
    # one loss a proxy cannot hide: a response host b had begun to send when
    # its link went (nginx had passed its head on), cut mid-way. Only a
    # request sent before the loss can be one, at most one per load worker;
    # every request sent after it was answered.
    cut = [(at, error) for at, error in report.failures
           if at < unplugged_at and "mid-response" in error]  # fmt: skip
    assert report.failed == len(cut) <= load.workers, report.failures[:5]
    assert set(bodies) == BODIES
    assert Host.objects.get(name="b").state == HostState.UNREACHABLE
    assert container_names(agents["a"]) == ["hello.v1.web.1", "hello.v1.web.2"]

    # Host b comes back: same root, its old container re-adopted, then removed.
    link_up(network, lost)
    agents["b"].start()
    wait_for(lambda: _beat()["b"] == "ready", 60, "host b to answer again")
    wait_for(lambda: container_names(agents["b"]) == [], 120, "b's stale container to go")
    assert container_names(agents["a"]) == ["hello.v1.web.1", "hello.v1.web.2"]
    assert [(i.container_name, i.host.name) for i in _instances()] == [
        ("hello.v1.web.1", "a"), ("hello.v1.web.2", "a"),
    ]  # fmt: skip
    again = reconcile()
    assert again.started == again.removed == again.moved == [], again
    assert {get(port, HOST)[1].strip() for _ in range(20)} == BODIES
    _lost_with_nowhere_to_go(alice, network, lost, agents, port)


def _started_at(agent: AgentProcess, name: str) -> str:
    status, info = agent.request("GET", f"/v1/containers/{name}")
    assert status == 200, info
    return str(info["started_at"])


def _lost_with_nowhere_to_go(alice: Any, network: Lan, lost: NetnsHost,
                             agents: dict[str, AgentProcess], port: int) -> None:  # fmt: skip
    """Host a is draining when b is lost: no ready host to move web.3 to,
    so it stays, lost. When b returns, that same container (not a new one)
    serves again once it answers, and the drain completes onto b."""
    app = App.objects.get(name="hello")
    formation_scale(user=alice, app=app, process_type="web", count=3)
    wait_for(lambda: sum(i.healthy for i in _instances()) == 3, 300, "three healthy instances")
    assert Instance.objects.get(index=3).host.name == "b"
    started = _started_at(agents["b"], "hello.v1.web.3")
    Host.objects.filter(name="a").update(state=HostState.DRAINING)  # what the admin's drain does

    link_down(lost)
    agents["b"].kill()
    wait_for(lambda: _beat()["b"] == "unreachable", 120, "host b to be unreachable")
    wait_for(lambda: Instance.objects.get(index=3).state == InstanceState.LOST, 60, "web.3 lost")
    assert Instance.objects.get(index=3).host.name == "b"  # nowhere to go
    two = {f"Hello, world from hello-v1-web-{n}" for n in (1, 2)}
    assert {get(port, HOST)[1].strip() for _ in range(10)} == two  # a serves while draining

    link_up(network, lost)
    agents["b"].start()
    wait_for(lambda: _beat()["b"] == "ready", 60, "host b to answer again")

    def drained() -> bool:
        now = _instances()
        return {i.host.name for i in now} == {"b"} and all(i.healthy for i in now)

    wait_for(drained, 300, "web.3 back in service and the drain done, all on b")
    assert _started_at(agents["b"], "hello.v1.web.3") == started  # rejoined, not re-made
    names = ["hello.v1.web.1", "hello.v1.web.2", "hello.v1.web.3"]
    assert container_names(agents["b"]) == names
    wait_for(lambda: container_names(agents["a"]) == [], 60, "a's containers to go")
    three = {f"Hello, world from hello-v1-web-{n}" for n in (1, 2, 3)}
    wait_for(lambda: {get(port, HOST)[1].strip() for _ in range(30)} == three, 60,
             "all three through the router")  # fmt: skip
