"""Issue 13, fault 1 (deploys): a real Celery worker SIGKILLed while it
rolls out v2 of an app serving v1 (a real agent, nginx as the router, a
busybox image from the real registry): once v2's instance is healthy but
before the router switch; once after the switch, before the task that
stops v1's instance is sent; once in that task, about to stop it. A fresh
worker and a real beat with short sweeps take over (paas/hosts/resume.py).
The deploy then completes exactly once: v2
current and served, v1 retired and its container gone, nothing else on the
agent (container, directory, mount, netns, veth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paas.applications.models import (
    App,
    AuditEntry,
    Release,
    ReleaseCause,
    ReleaseState,
)
from paas.hosts.models import Instance
from paas.hosts.tasks import deploy_release
from paas.logs.models import LogLine
from tests.support.agent_harness import AgentProcess
from tests.support.images import BuiltImage
from tests.support.registry import TestRegistry
from tests.support.router import TestRouter
from tests.web.deploy_support import (
    container_names,
    get,
    wait_for,
)
from tests.web.fault_support import (
    agent_leftovers,
    kill_at,
    release_images,
    serving_v1,
    stop_worker_at,
    take_over,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def images(
    registry: TestRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[BuiltImage, BuiltImage]:
    return release_images(registry, tmp_path_factory.mktemp("images"))


def _states(app: App) -> dict[int, str]:
    return dict(Release.objects.filter(app=app).values_list("number", "state"))


@pytest.mark.parametrize(
    "point",
    # Before the switch; after it, before the old instances are told to
    # stop; and in the retire task itself, as it is about to stop v1's.
    ["deploy.before_switch", "deploy.after_switch", "deploy.retire"],
)
def test_a_worker_killed_mid_deploy_leaves_the_deploy_completed_once(
    point: str, alice: Any, platform: int, agent: AgentProcess, router: TestRouter,
    images: tuple[BuiltImage, BuiltImage], workers: Any, tmp_path: Path,
) -> None:  # fmt: skip
    one, two = images
    name = f"dies-at-{point.split('.')[1].replace('_', '-')}"
    host = f"{name}.localhost"
    app = serving_v1(alice, name, one)
    assert get(platform, host) == (200, one.index_body)

    markers = tmp_path / "markers"
    markers.mkdir()
    workers.env.update(router.env)
    worker = stop_worker_at(workers, point, markers)
    v2 = Release.objects.create(app=app, number=2, image=two.pinned_ref,
                                cause=ReleaseCause.IMAGE, process_types={})  # fmt: skip
    deploy_release.delay(v2.pk)
    kill_at(worker, point, markers)

    # Where the worker died: both releases' instances run; the router
    # serves v1 (not switched yet) or v2 (switched).
    both = {f"{name}.v1.web.1", f"{name}.v2.web.1"}
    assert set(container_names(agent)) == both
    v1_address = Instance.objects.get(container_name=f"{name}.v1.web.1").address
    left = agent_leftovers(agent, {f"{name}.v2.web.1"}, [v1_address])  # v1's, for now
    assert {f"container {name}.v1.web.1", f"nft rule for {v1_address}"} <= set(left)
    if point == "deploy.before_switch":
        assert _states(app) == {1: ReleaseState.CURRENT, 2: ReleaseState.DEPLOYING}
        assert get(platform, host) == (200, one.index_body)
    else:
        assert _states(app) == {1: ReleaseState.RETIRED, 2: ReleaseState.CURRENT}
        assert get(platform, host) == (200, two.index_body)

    live = {f"{name}.v2.web.1"}

    def settled() -> bool:
        return _states(app)[2] == ReleaseState.CURRENT and not agent_leftovers(
            agent, live, [v1_address]
        )

    with take_over(workers, tmp_path):
        try:
            wait_for(settled, 120, "the deploy to settle")
        except AssertionError:
            left = agent_leftovers(agent, live, [v1_address])
            raise AssertionError(f"not settled: {_states(app)}, left {left}") from None

    assert _states(app) == {1: ReleaseState.RETIRED, 2: ReleaseState.CURRENT}
    assert get(platform, host) == (200, two.index_body)
    assert sorted(Instance.objects.filter(app=app).values_list("container_name", flat=True)) == [
        f"{name}.v2.web.1"
    ]
    # Made live once: one audit entry, one "is live" line in the app's log.
    assert AuditEntry.objects.filter(app=app, action="deploy", target="v2").count() == 1
    assert LogLine.objects.filter(app=app, text="v2 is live").count() == 1
