"""The deploy path when things go wrong or move, on real parts: a real agent
process running a tiny busybox image from the real registry, nginx as the
router, real Redis, real Celery workers. A crash loop and an OOM kill show
up within a poll of the agent; a restart of an app (one instance or two)
drops no request through the router; a worker killed while it holds an
app's deploy lock does not block the next deploy for long; a published TCP
port stays the same across a redeploy."""

from __future__ import annotations

import http.client
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from bench.support.http_load import LoadResult, run_load
from paas.applications.models import App, Formation, Release, ReleaseCause, ReleaseState
from paas.applications.services import app_create
from paas.hosts import deploy, lifecycle
from paas.hosts.locks import app_lock_held
from paas.hosts.models import Instance, InstanceState
from paas.hosts.observe import hosts_observe
from tests.support.agent_harness import AgentProcess
from tests.support.images import BuiltImage, build_busybox_image
from tests.support.processes import free_port
from tests.support.registry import TestRegistry
from tests.support.router import TestRouter
from tests.web.deploy_support import (
    container_names,
    get,
    wait_for,
    wait_release,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

MIB = 2**20
ROOT = Path(__file__).resolve().parents[2]


def _app(
    user: Any, name: str, image: BuiltImage, formation: dict[str, tuple[str, int, int]]
) -> App:
    """An app whose v1 runs ``image``: process type -> (command, count, MiB)."""
    app = app_create(user=user, team=user.personal_team, name=name)
    for process_type, (_, count, mib) in formation.items():
        Formation.objects.create(
            app=app, process_type=process_type, count=count, memory_bytes=mib * MIB
        )
    Release.objects.create(
        app=app, number=1, image=image.pinned_ref, cause=ReleaseCause.IMAGE,
        process_types={t: command for t, (command, _, _) in formation.items() if command},
    )  # fmt: skip
    return app


def _deploy(app: App) -> Release:
    release = Release.objects.get(app=app, number=1)
    state = deploy.release_deploy(release_id=release.pk)
    release.refresh_from_db()
    assert state == ReleaseState.CURRENT, release.error
    return release


def _observed(name: str, **fields: Any) -> Instance | None:
    hosts_observe()
    instance = Instance.objects.get(container_name=name)
    return instance if all(getattr(instance, k) == v for k, v in fields.items()) else None


def test_a_crash_loop_and_an_oom_kill_show_within_a_poll_of_the_agent(
    client: Any, alice: Any, platform: int, busybox: BuiltImage
) -> None:
    app = _app(alice, "loops", busybox, {
        "crasher": ("sh -c 'echo going down; exit 3'", 1, 64),
        "hog": ("dd if=/dev/zero of=/dev/null bs=256M count=1", 1, 16),
    })  # fmt: skip
    _deploy(app)  # no web process: nothing to health-check, the release goes live

    crasher = wait_for(
        lambda: _observed("loops.v1.crasher.1", state=InstanceState.BACKOFF, exit_code=3),
        30, "the crasher to be seen crash-looping",
    )  # fmt: skip
    assert not crasher.healthy and not crasher.oom_killed
    hog = wait_for(lambda: _observed("loops.v1.hog.1", oom_killed=True), 30, "the OOM kill")
    assert hog.state in (InstanceState.BACKOFF, InstanceState.STARTING, InstanceState.RUNNING)

    client.force_login(alice)
    page = client.get("/apps/loops/").content.decode()
    assert "Crash-looping" in page and "(exit 3)" in page
    assert "(out of memory)" in page
    # Between two crashes the agent has it running again: why it went down stays shown.
    wait_for(lambda: _observed("loops.v1.crasher.1", restart_count=2), 30, "a second restart")
    assert Instance.objects.get(container_name="loops.v1.crasher.1").exit_code == 3
    assert "restarted 2×" in client.get("/apps/loops/").content.decode()


def test_the_beat_keeps_instance_states_fresh_without_the_reconcile(
    alice: Any, platform: int, busybox: BuiltImage, workers: Any, router: TestRouter,
    tmp_path: Path,
) -> None:  # fmt: skip
    # The reconcile would notice too, but only every 10 minutes here.
    workers.env.update({**router.env, "PAAS_OBSERVE_SECONDS": "0.5",
                        "PAAS_RECONCILE_SECONDS": "600"})  # fmt: skip
    app = _app(alice, "watched", busybox, {"crasher": ("sh -c 'exit 3'", 1, 64)})
    _deploy(app)
    workers.start()
    with workers.beat():
        wait_for(
            lambda: Instance.objects.filter(
                container_name="watched.v1.crasher.1", state=InstanceState.BACKOFF, exit_code=3
            ).exists(),
            60, "the beat's observe to see the crash loop",
        )  # fmt: skip


def test_a_web_instance_that_went_down_leaves_the_router_and_rejoins_when_back(
    alice: Any, platform: int, agent: AgentProcess, busybox: BuiltImage
) -> None:
    _deploy(_app(alice, "bouncy", busybox, {"web": ("", 1, 64)}))
    name = "bouncy.v1.web.1"
    # Behind the platform's back: its agent stops it, then starts it again.
    assert agent.request("POST", f"/v1/containers/{name}/stop", {"timeout_s": 0})[0] == 200
    wait_for(lambda: _observed(name, healthy=False, state=InstanceState.CRASHED), 30, "down")
    assert get(platform, "bouncy.localhost")[0] == 503  # out of the router at once
    assert agent.request("POST", f"/v1/containers/{name}/start")[0] == 200
    wait_for(lambda: _observed(name, healthy=True, state=InstanceState.RUNNING), 30, "back")
    assert get(platform, "bouncy.localhost") == (200, busybox.index_body)


def _under_load(platform: int, host: str, action: Any) -> LoadResult:
    stop = threading.Event()
    outcome: list[LoadResult] = []
    bodies: list[int] = []

    def load() -> None:
        outcome.append(run_load(host="127.0.0.1", port=platform, host_header=host, workers=2,
                                duration_s=600, stop=stop,
                                on_response=lambda r: bodies.append(r.status)))  # fmt: skip

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(bodies) > 20, 30, "load through the router")
        action()
        served = len(bodies)
        wait_for(lambda: len(bodies) > served + 20, 30, "load after the action")
    finally:
        stop.set()
        thread.join(timeout=60)
    (report,) = outcome
    return report


def _pids(agent: AgentProcess) -> dict[str, int]:
    _, body = agent.request("GET", "/v1/containers")
    return {c["name"]: c["pid"] for c in body["containers"]}


def test_restarting_an_app_of_one_or_two_instances_drops_no_request(
    alice: Any, platform: int, agent: AgentProcess, busybox: BuiltImage
) -> None:
    app = _app(alice, "steady", busybox, {"web": ("", 1, 64)})
    _deploy(app)
    assert get(platform, "steady.localhost") == (200, busybox.index_body)

    before = _pids(agent)
    alone = _under_load(platform, "steady.localhost",
                        lambda: lifecycle.app_restart(user=alice, app=app))  # fmt: skip
    assert alone.failed == 0, alone.errors[:5]
    # Restarted in place (a new process), and the extra instance that served meanwhile is gone.
    assert _pids(agent).keys() == {"steady.v1.web.1"}
    assert _pids(agent)["steady.v1.web.1"] != before["steady.v1.web.1"]

    name = "steady.v1.web.1"
    one = _under_load(platform, "steady.localhost", lambda: lifecycle.instance_action(
        user=alice, app=app, name=name, action="restart"))  # fmt: skip
    assert one.failed == 0, one.errors[:5]

    Formation.objects.filter(app=app, process_type="web").update(count=2)
    deploy.app_converge(app_id=app.pk)
    assert sorted(_pids(agent)) == ["steady.v1.web.1", "steady.v1.web.2"]
    before = _pids(agent)
    two = _under_load(platform, "steady.localhost",
                      lambda: lifecycle.app_restart(user=alice, app=app))  # fmt: skip
    assert two.failed == 0, two.errors[:5]
    after = _pids(agent)
    assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in before)
    print(f"restarts under load: {alone.ok + one.ok + two.ok} ok, "
          f"{alone.retries + one.retries + two.retries} retries")  # fmt: skip


def test_a_worker_killed_holding_the_deploy_lock_blocks_the_next_deploy_briefly(
    alice: Any, platform: int, agent: AgentProcess, busybox: BuiltImage, workers: Any,
    router: TestRouter,
) -> None:  # fmt: skip
    from paas.hosts.tasks import deploy_release

    # The old lock lived 300 s; a lease of 5 s (renewed while its holder
    # lives) must free it well within the wait below.
    workers.env.update({**router.env, "PAAS_DEPLOY_LOCK_LEASE_S": "5",
                        "PAAS_DRAIN_SECONDS": "0.5"})  # fmt: skip
    app = _app(alice, "stuck", busybox, {"web": ("", 1, 64), "release": ("sleep 600", 0, 64)})
    v1 = Release.objects.get(app=app, number=1)
    worker = workers.start()
    deploy_release.delay(v1.pk)
    # The release phase sleeps: the worker holds the app's lock meanwhile.
    wait_for(lambda: "stuck.v1.release.1" in container_names(agent), 60, "the release phase")
    assert app_lock_held(app.pk)

    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert app_lock_held(app.pk)  # the dead worker's lease has not run out yet
    wait_for(lambda: not app_lock_held(app.pk), 60, "the dead worker's lease to run out")

    workers.start()
    v2 = Release.objects.create(app=app, number=2, image=busybox.pinned_ref,
                                cause=ReleaseCause.CONFIG, process_types={})  # fmt: skip
    deploy_release.delay(v2.pk)
    assert wait_release("stuck", 2, timeout_s=120).state == ReleaseState.CURRENT
    assert get(platform, "stuck.localhost") == (200, busybox.index_body)


def _published_body(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_a_redeploy_keeps_the_published_port_and_switches_it_when_the_old_instance_goes(
    client: Any, alice: Any, platform: int, busybox: BuiltImage, registry: TestRegistry,
    settings: Any, tmp_path: Path,
) -> None:  # fmt: skip
    first = free_port()
    settings.PAAS_TCP_PORTS_FIRST, settings.PAAS_TCP_PORTS_LAST = first, first + 2
    app = _app(alice, "tcp", busybox, {"web": ("", 1, 64)})
    Formation.objects.filter(app=app).update(tcp_port=8080)
    _deploy(app)
    (v1_instance,) = Instance.objects.filter(release__number=1)
    port = v1_instance.host_port
    assert port is not None and _published_body(port) == busybox.index_body

    second = build_busybox_image(registry, tmp_path / "second", body="the second release\n")
    v2 = Release.objects.create(app=app, number=2, image=second.pinned_ref,
                                cause=ReleaseCause.IMAGE, process_types={})  # fmt: skip
    assert deploy.release_deploy(release_id=v2.pk) == ReleaseState.CURRENT
    (v2_instance,) = Instance.objects.filter(release=v2)
    assert v2_instance.host_port == port  # the app's port stays where its clients know it
    # The old instance keeps the port while it drains; the router already sends HTTP to v2.
    assert _published_body(port) == busybox.index_body
    assert get(platform, "tcp.localhost") == (200, "the second release\n")

    deploy.app_retire_old(app_id=app.pk)
    assert _published_body(port) == "the second release\n"  # switched as the old one went
    client.force_login(alice)
    assert f"<code>local:{port}</code> → 8080" in client.get("/apps/tcp/").content.decode()
