"""A release command (the Procfile's ``release:``, migrations say) runs at
most once per release, even when the worker deploying it is SIGKILLed and a
fresh worker resumes the deploy (paas/hosts/release_phase.py, issue 13 fault 1).

v2 of an app serving v1 has a release command that waits for the test's
go-ahead (a file put in its container's rootfs), so the test decides when
it ends, and a second run of it (a new container, without the file) could
never end: the deploy would time out instead of going live. A real worker is
killed at a failpoint (paas/core/failpoints.py); a fresh worker and a real
beat with short sweeps (paas/hosts/resume.py) take over:

- while the command runs: the resumed deploy finds its container, waits for
  that same run to end, and goes live;
- after it succeeded, before any instance started: it is not run again;
- while it runs, its container then lost by the agent: whether it finished
  is unknown, so the release fails saying so and v1 keeps serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paas.applications.models import (
    Release,
    ReleaseCause,
    ReleaseCommandState,
    ReleaseState,
)
from paas.hosts.tasks import deploy_release
from tests.support.agent_harness import AgentProcess
from tests.support.images import BuiltImage
from tests.support.registry import TestRegistry
from tests.support.router import TestRouter
from tests.web.deploy_support import (
    container_names,
    get,
    wait_for,
)
from tests.web.fault_support import kill_at, release_images, serving_v1, stop_worker_at, take_over

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

GATED = "sh -c 'until [ -e /go ]; do sleep 0.1; done; echo migrated'"


@pytest.fixture(scope="module")
def images(
    registry: TestRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[BuiltImage, BuiltImage]:
    return release_images(registry, tmp_path_factory.mktemp("images"))


def _go(agent: AgentProcess, name: str) -> None:
    """Let the release command in container ``name`` finish."""
    (agent.root / "containers" / name / "rootfs" / "go").write_text("")


CASES = ["while-running", "after-it-succeeded", "container-lost"]


@pytest.mark.parametrize("case", CASES)
def test_a_resumed_deploy_never_runs_the_release_command_twice(
    case: str, alice: Any, platform: int, agent: AgentProcess, router: TestRouter,
    images: tuple[BuiltImage, BuiltImage], workers: Any, tmp_path: Path,
) -> None:  # fmt: skip
    one, two = images
    app = serving_v1(alice, f"rc-{case}", one)
    host = f"{app.name}.localhost"
    command = f"{app.name}.v2.release.1"
    point = "deploy.after_release_command" if case == "after-it-succeeded" else "release.running"

    markers = tmp_path / "markers"
    markers.mkdir()
    # A second run would wait for ever: let the deploy give up on it soon.
    workers.env.update({**router.env, "PAAS_RELEASE_TIMEOUT_S": "90"})
    worker = stop_worker_at(workers, point, markers)
    v2 = Release.objects.create(app=app, number=2, image=two.pinned_ref, cause=ReleaseCause.IMAGE,
                                process_types={"release": GATED})  # fmt: skip
    deploy_release.delay(v2.pk)
    if case == "after-it-succeeded":
        wait_for(lambda: (agent.root / "containers" / command / "rootfs").is_dir(), 240,
                 "the release command's container")  # fmt: skip
        _go(agent, command)
    kill_at(worker, point, markers)

    v2.refresh_from_db()
    assert v2.state == ReleaseState.DEPLOYING
    if case == "after-it-succeeded":
        assert v2.release_command == ReleaseCommandState.SUCCEEDED
        assert command not in container_names(agent)  # ran, ended, removed
    else:
        assert v2.release_command == ReleaseCommandState.RUNNING
        assert command in container_names(agent)  # waiting for its go-ahead
    if case == "container-lost":
        status, body = agent.request("DELETE", f"/v1/containers/{command}?force=1")
        assert status in (200, 204), body

    reappeared = []

    def settled() -> bool:
        if case != "while-running" and command in container_names(agent):
            reappeared.append(True)  # a second run of the command
        v2.refresh_from_db()
        return v2.state in (ReleaseState.CURRENT, ReleaseState.FAILED)

    with take_over(workers, tmp_path):
        if case == "while-running":
            _go(agent, command)  # the dead worker's run, left running, ends now
        wait_for(settled, 180, "v2 to settle")
        wait_for(lambda: command not in container_names(agent), 60, "the command's container gone")

    assert not reappeared, "the release command ran a second time"
    v2.refresh_from_db()
    if case == "container-lost":
        assert v2.state == ReleaseState.FAILED
        assert v2.error.startswith(f"the release command ({GATED}) was interrupted"), v2.error
        assert "deploy again" in v2.error
        assert v2.release_command == ReleaseCommandState.FAILED
        assert Release.objects.get(app=app, number=1).state == ReleaseState.CURRENT
        assert get(platform, host) == (200, one.index_body)
    else:
        assert v2.state == ReleaseState.CURRENT, v2.error
        assert v2.release_command == ReleaseCommandState.SUCCEEDED
        assert get(platform, host) == (200, two.index_body)
