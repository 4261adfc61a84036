"""Collection on real parts: a real agent process runs a real container that
burns CPU and holds memory; the control plane reads every container's cgroup
counters from the agent in one request and stores points for its app."""

from __future__ import annotations

import pytest

from paas.applications.models import Release
from paas.applications.services import app_create
from paas.hosts.models import Host, HostState, Instance, InstanceState
from paas.metrics.models import MetricPoint, Tier
from paas.metrics.services import metrics_collect
from tests.support.processes import wait_until
from tests.web.deploy_support import add_host

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.root]

# Busy for a fifth of each 50 ms, holding a few MiB in a shell variable.
BURNER = (
    "x=$(head -c 4000000 /dev/zero | tr '\\0' a); "
    "while true; do i=0; while [ $i -lt 300 ]; do i=$((i+1)); done; sleep 0.04; done"
)


def start(agent, image_ref: str, name: str, cmd: list[str]) -> None:
    body = {"name": name, "image": image_ref, "cmd": cmd}
    status, info = agent.request("POST", "/v1/containers", body)
    assert status == 201, info


def instance(app, host: Host, name: str, index: int) -> Instance:
    release, _ = Release.objects.get_or_create(app=app, number=1, defaults={"image": "x"})
    return Instance.objects.create(
        app=app, release=release, process_type="web", index=index, host=host,
        container_name=name, memory_bytes=64 * 1024 * 1024, state=InstanceState.RUNNING,
    )  # fmt: skip


def collect_until(check, timeout_s: float = 60):
    def collected():
        metrics_collect()
        points = list(MetricPoint.objects.filter(tier=Tier.FINE).order_by("sampled_at"))
        return points if check(points) else None

    # Half a second apart: a CPU share is measured between two collections.
    return wait_until(collected, timeout_s=timeout_s, what="the points asked for", poll_s=0.5)


def test_it_stores_cpu_and_memory_of_each_running_instance(alice, agent, busybox):
    app = app_create(user=alice, team=alice.personal_team, name="burner")
    host = add_host(agent, "h1")
    busy, idle = f"burner.v1.web.1.{agent.port}", f"burner.v1.web.2.{agent.port}"
    start(agent, busybox.ref, busy, ["sh", "-c", BURNER])
    start(agent, busybox.ref, idle, ["sleep", "600"])
    start(agent, busybox.ref, f"stranger-{agent.port}", ["sleep", "600"])
    instance(app, host, busy, 1)
    instance(app, host, idle, 2)

    def measured(points: list[MetricPoint]) -> bool:
        return any(p.container == busy and (p.cpu_percent or 0) > 0 for p in points)

    points = collect_until(measured)

    # Only the platform's instances are stored; the stranger is nobody's.
    assert {p.container for p in points} == {busy, idle}
    burning = [p for p in points if p.container == busy and p.cpu_percent]
    assert all(0 < p.cpu_percent < 250 for p in burning)
    # In bytes: the busy one holds a 4 MB string more than the idle one.
    sleeping = [p for p in points if p.container == idle]
    assert burning[-1].memory_bytes > sleeping[-1].memory_bytes + 3_000_000
    assert all(p.app_id == app.pk and p.release == 1 for p in points)
    assert {p.instance for p in points} == {"web.1", "web.2"}
    first = min((p for p in points if p.container == busy), key=lambda p: p.sampled_at)
    assert first.cpu_percent is None  # no earlier counter to compare with


def test_hosts_that_do_not_answer_or_were_removed_are_skipped(alice, agent, busybox):
    app = app_create(user=alice, team=alice.personal_team, name="burner")
    ok = add_host(agent, "ok")
    Host.objects.create(name="down", agent_url="http://127.0.0.1:9", token="x")
    gone = add_host(agent, "gone")
    Host.objects.filter(pk=gone.pk).update(state=HostState.REMOVED)
    name, stale = f"burner.v1.web.1.{agent.port}", f"burner.v1.web.2.{agent.port}"
    start(agent, busybox.ref, name, ["sleep", "600"])
    start(agent, busybox.ref, stale, ["sleep", "600"])
    instance(app, ok, name, 1)
    instance(app, gone, stale, 2)  # a removed host is not asked

    assert metrics_collect() == 1
    point = MetricPoint.objects.get()
    assert point.container == name and point.memory_bytes > 0


def test_celery_beat_collects_on_a_real_worker(alice, agent, busybox, workers):
    """beat sends metrics.collect every PAAS_METRICS_INTERVAL_S to a real
    worker; successive collections give the CPU share between them."""
    app = app_create(user=alice, team=alice.personal_team, name="burner")
    host = add_host(agent, "h1")
    name = f"burner.v1.web.1.{agent.port}"
    start(agent, busybox.ref, name, ["sh", "-c", BURNER])
    instance(app, host, name, 1)
    workers.env.update(PAAS_METRICS_INTERVAL_S="1", PAAS_METRICS_COARSE_S="60")
    workers.start()
    with workers.beat():
        wait_until(
            MetricPoint.objects.filter(container=name, cpu_percent__gt=0).exists,
            timeout_s=90,
            what="a collected point with a CPU share",
            poll_s=0.2,
        )
    assert MetricPoint.objects.filter(container=name).count() >= 2
