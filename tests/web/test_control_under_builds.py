"""Issue 13, fault 6 under build load: the worker as scripts/up's Procfile
runs it, with two long builds holding both build slots, still runs the
control loops (the heartbeat that turns a lost host unreachable, which is
what starts moving its instances; the observe that sees an instance crash),
and a third build waits in the queue, nothing lost, until a slot frees;
the same with a deploy whose release command hangs holding the last work
slot (paas/core/work_slots.py), where a second deploy waits (real worker,
real beat, real runc, a real agent for the crash and the deploys)."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.utils import timezone

from paas.applications.models import AuditEntry, Release, ReleaseCause, ReleaseState
from paas.applications.services import app_create
from paas.builds.models import BuildState
from paas.builds.services import build_cancel
from paas.core.work_slots import WORK_QUEUE
from paas.hosts.models import Host, HostState, Instance, InstanceState
from paas.hosts.tasks import deploy_release
from tests.support.processes import free_port
from tests.web.build_slots_support import (
    CANCELLED,
    STEP_STARTED,
    cancelled_at_end,
    procfile_pool,
    quick_dockerfile,
    slow_dockerfile,
    steps_running,
    two_slow_builds_running,
    upload_builds,
    wait_log,
)
from tests.web.deploy_support import container_names, wait_build_final, wait_for
from tests.web.fault_support import (
    FAST_SWEEPS,
    build_leftovers,
    forget_messages,
    kill,
    running_steps,
    take_over,
)
from tests.web.test_build_cancel import log_of
from tests.web.test_deploy_resilience import _app, _deploy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]


@pytest.fixture(autouse=True)
def _forget_after(workers):
    """The beat's tasks a worker had no time for stay in this session's
    Redis: stopped with the worker, they go, so no later test's worker
    runs them (as the first thing it does)."""
    yield
    workers.stop_all()
    forget_messages(workers.env["REDIS_URL"])


def _start_clean(workers: Any, pool: tuple[str, ...]) -> Any:
    """A worker on a queue with nothing of an earlier test's in it."""
    forget_messages(workers.env["REDIS_URL"])
    return workers.start(pool)


def _lost_host() -> Host:
    """A host whose agent is gone (nothing listens on its port any more),
    silent for an hour: the next heartbeat must mark it unreachable."""
    return Host.objects.create(
        name="lost", agent_url=f"https://127.0.0.1:{free_port()}", state=HostState.READY,
        tls_fingerprint=":".join(["AB"] * 32), token=secrets.token_hex(16),
        last_heartbeat_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip


def _crash_loop_seen() -> bool:
    """The "crashing" app's instance (its command exits 3) is observed in backoff."""
    return Instance.objects.filter(
        container_name="crashing.v1.crasher.1", state=InstanceState.BACKOFF, exit_code=3
    ).exists()


def _state(host: Host) -> str:
    host.refresh_from_db()
    return host.state


def test_a_lost_host_is_noticed_while_two_builds_hold_the_build_slots(
    client, alice, workers, build_env
):
    # A heartbeat every second, a host silent for 2 s is lost: the bound this
    # test waits for is seconds, the builds below hold their slots for minutes.
    workers.env.update(PAAS_HEARTBEAT_SECONDS="1", PAAS_HOST_TIMEOUT_S="2")
    _start_clean(workers, procfile_pool())
    with two_slow_builds_running(client, alice) as builds:
        # A third build while both slots are held: it must wait, not run.
        [third] = upload_builds(client, alice, ["three"], quick_dockerfile())
        lost = _lost_host()
        with workers.beat():
            wait_for(lambda: _state(lost) == HostState.UNREACHABLE, 120,
                     "the heartbeat to mark the lost host unreachable")  # fmt: skip
        assert AuditEntry.objects.filter(action="host.unreachable", target="lost").exists()
        third.refresh_from_db()
        assert third.state == BuildState.QUEUED  # both slots were still busy
        assert len(steps_running(build_env)) == 2

        # A slot frees: the waiting build runs (it was not lost while it waited).
        assert build_cancel(build=builds[0])
        wait_log(builds[0], CANCELLED, 60)
        assert wait_build_final(third, 300).state == BuildState.SUCCEEDED
    assert steps_running(build_env) == []


def test_a_crash_loop_is_observed_while_two_builds_hold_the_build_slots(
    client, alice, workers, build_env, platform, busybox, router
):
    """deploy.observe (the beat's poll of every agent, which also drops a
    poll that waited too long) still sees an instance crash under build load."""
    workers.env.update({**router.env, "PAAS_OBSERVE_SECONDS": "0.5",
                        "PAAS_RECONCILE_SECONDS": "600"})  # fmt: skip
    app = _app(alice, "crashing", busybox, {"crasher": ("sh -c 'exit 3'", 1, 64)})
    _deploy(app)  # in this process; only the beat's observe can see it crash
    _start_clean(workers, procfile_pool())
    with two_slow_builds_running(client, alice):
        # Nothing has looked at the agent since the deploy.
        assert Instance.objects.get(container_name="crashing.v1.crasher.1").exit_code is None
        with workers.beat():
            wait_for(_crash_loop_seen, 120, "the beat's observe to see the crash loop")
        assert len(steps_running(build_env)) == 2  # the builds still held their slots


def test_builds_queued_before_the_worker_starts_take_the_slots_one_at_a_time(
    client, alice, workers, build_env
):
    """Both builds are in the queue when the worker starts, so it may fetch
    both before it pauses the builds queue: the one that finds no slot goes
    back to the queue (not lost, still queued) and runs once the slot frees."""
    workers.env.update(PAAS_BUILD_SLOTS="1")
    forget_messages(workers.env["REDIS_URL"])  # before this test's builds are queued
    builds = upload_builds(client, alice, ("one", "two"), slow_dockerfile())
    workers.start(("--pool", "threads", "--concurrency", "2"))
    with cancelled_at_end(builds):
        running = wait_for(lambda: _started(builds), 240, "a build's step")
        waiting = next(b for b in builds if b.pk != running.pk)
        waiting.refresh_from_db()
        assert waiting.state == BuildState.QUEUED  # one slot, and it is taken
        assert len(steps_running(build_env)) == 1
        assert build_cancel(build=running)
        wait_log(waiting, STEP_STARTED, 240)  # its turn came
        assert len(steps_running(build_env)) == 1
    assert steps_running(build_env) == []


def _started(builds: list[Any]) -> Any:
    return next((b for b in builds if STEP_STARTED in log_of(b)), None)


def test_a_build_waiting_for_a_slot_is_not_lost_when_the_worker_is_killed(
    client, alice, workers, build_env, tmp_path
):
    """A waiting build stays in Redis (its queue paused), not in the worker:
    SIGKILLed, the worker takes nothing with it, and the one that takes over
    runs the waiting build at once (a message the dead worker had held would
    come back only after the broker's visibility timeout, half an hour)."""
    workers.env.update({**FAST_SWEEPS, "PAAS_BUILD_SLOTS": "1"})
    worker = _start_clean(workers, ("--pool", "threads", "--concurrency", "2"))
    [running] = upload_builds(client, alice, ["running"], slow_dockerfile())
    wait_log(running, STEP_STARTED, 240)
    steps = running_steps(build_env)
    [waiting] = upload_builds(client, alice, ["waiting"], quick_dockerfile())
    kill(worker)
    waiting.refresh_from_db()
    assert waiting.state == BuildState.QUEUED

    with take_over(workers, tmp_path):
        assert wait_build_final(waiting, 240).state == BuildState.SUCCEEDED
        # The killed build is failed by the sweep and cleaned up, as ever.
        wait_for(lambda: not build_leftovers(build_env, str(running.pk), steps), 120,
                 "the killed build's leftovers to go")  # fmt: skip
    running.refresh_from_db()
    assert running.state == BuildState.FAILED


GATED = "sh -c 'until [ -e /go ]; do sleep 0.1; done; echo migrated'"


def test_control_loops_run_while_two_builds_and_a_deploy_hold_every_work_slot(
    client, alice, workers, build_env, platform, agent, busybox, router
):
    """Two builds and a deploy whose release command hangs (migrations that
    wait on a lock, say) hold all the long-work slots: the heartbeat still
    marks a lost host unreachable, observe still sees a crash loop, and a
    second deploy waits in the queue until the release command ends."""
    workers.env.update({**router.env, "PAAS_HEARTBEAT_SECONDS": "1", "PAAS_HOST_TIMEOUT_S": "2",
                        "PAAS_OBSERVE_SECONDS": "0.5",
                        "PAAS_RECONCILE_SECONDS": "600"})  # fmt: skip
    crashing = _app(alice, "crashing", busybox, {"crasher": ("sh -c 'exit 3'", 1, 64)})
    _deploy(crashing)  # in this process; only the beat's observe can see it crash
    _start_clean(workers, procfile_pool())
    command = "gated.v1.release.1"
    with two_slow_builds_running(client, alice):
        gated = app_create(user=alice, team=alice.personal_team, name="gated")
        hanging = Release.objects.create(app=gated, number=1, image=busybox.pinned_ref,
                                         cause=ReleaseCause.IMAGE,
                                         process_types={"release": GATED})  # fmt: skip
        deploy_release.delay(hanging.pk)
        wait_for(lambda: (agent.root / "containers" / command / "rootfs").is_dir(), 240,
                 "the hanging release command's container")  # fmt: skip
        later = _app(alice, "later", busybox, {"idle": ("sleep 3600", 1, 16)})
        waiting = Release.objects.get(app=later, number=1)
        deploy_release.delay(waiting.pk)
        lost = _lost_host()
        with workers.beat():
            wait_for(lambda: _state(lost) == HostState.UNREACHABLE, 120,
                     "the heartbeat to mark the lost host unreachable")  # fmt: skip
            wait_for(_crash_loop_seen, 120, "the beat's observe to see the crash loop")
        # All the while the three long tasks held their slots, and the second
        # deploy waited for one.
        assert len(steps_running(build_env)) == 2
        assert command in container_names(agent)
        hanging.refresh_from_db()
        assert hanging.state == ReleaseState.DEPLOYING
        waiting.refresh_from_db()
        assert waiting.state != ReleaseState.CURRENT
        assert not Instance.objects.filter(app=later).exists()
        # It waits in Redis, where a killed worker cannot take it along.
        assert [waiting.pk] in _queued(workers.env["REDIS_URL"], "deploy.release")

        (agent.root / "containers" / command / "rootfs" / "go").write_text("")
        for release in (hanging, waiting):
            wait_for(_live(release), 180, f"{release} to go live")
    assert steps_running(build_env) == []


def _queued(redis_url: str, task: str) -> list[Any]:
    """The arguments of each ``task`` message waiting in the default queue."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw: list[bytes] = client.lrange(WORK_QUEUE, 0, -1)  # type: ignore[assignment]
    finally:
        client.close()
    messages = [json.loads(m) for m in raw]
    return [json.loads(base64.b64decode(m["body"]))[0] for m in messages
            if m["headers"]["task"] == task]  # fmt: skip


def _live(release: Release) -> Any:
    def live() -> bool:
        release.refresh_from_db()
        return release.state == ReleaseState.CURRENT

    return live


def test_a_deploy_waiting_for_a_work_slot_is_not_lost_when_the_worker_is_killed(
    client, alice, workers, build_env, platform, busybox, router, tmp_path
):
    """One work slot, held by a build: a deploy waits in Redis (its queue
    paused), not in the worker; SIGKILLed, the worker takes nothing with it,
    and the one that takes over deploys it."""
    workers.env.update({**router.env, **FAST_SWEEPS, "PAAS_BUILD_SLOTS": "1",
                        "PAAS_WORK_SLOTS": "1"})  # fmt: skip
    worker = _start_clean(workers, ("--pool", "threads", "--concurrency", "2"))
    [running] = upload_builds(client, alice, ["running"], slow_dockerfile())
    wait_log(running, STEP_STARTED, 240)
    app = _app(alice, "waiting", busybox, {"idle": ("sleep 3600", 1, 16)})
    waiting = Release.objects.get(app=app, number=1)
    deploy_release.delay(waiting.pk)
    wait_for(lambda: [waiting.pk] in _queued(workers.env["REDIS_URL"], "deploy.release"), 30,
             "the deploy in the paused queue")  # fmt: skip
    kill(worker)
    # Still there, not among the dead worker's unacked messages.
    assert [waiting.pk] in _queued(workers.env["REDIS_URL"], "deploy.release")
    waiting.refresh_from_db()
    assert waiting.state != ReleaseState.CURRENT

    with take_over(workers, tmp_path):
        wait_for(_live(waiting), 240, "the waiting deploy to go live")
        wait_for(lambda: _build_state(running) == BuildState.FAILED, 120,
                 "the sweep to fail the killed build")  # fmt: skip
    assert Instance.objects.filter(app=app, state=InstanceState.RUNNING).count() == 1


def _build_state(build: Any) -> str:
    build.refresh_from_db()
    return build.state
