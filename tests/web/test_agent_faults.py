"""The runtime agent killed (SIGKILL) at the worst moments, on real parts: a
real agent process, busybox httpd from the real registry, nginx as the
router, a bounded client sending requests through it the whole time.

The agent is frozen at an exact point by a failpoint
(runtime_agent/host/failpoints.py: the agent restarted with
PAAS_AGENT_FAILPOINTS writes a marker file there and blocks), killed, and
started again on the same root. Throughout, the app's instance that was
already serving must answer every request (containers are not the agent's
children to lose: it is a subreaper, not a parent that takes them along);
after the restart the agent re-adopts it (same pid), and the control
plane's periodic passes (reconcile, observe) bring the app to its formation
with no duplicate row or container: the half-started container is adopted
or removed, the half-stopped one is stopped and removed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas.applications.models import App, Formation, Release, ReleaseCause, ReleaseState
from paas.applications.services import app_create
from paas.hosts import deploy
from paas.hosts.models import Instance
from paas.hosts.observe import hosts_observe
from paas.hosts.reconcile import reconcile
from tests.support.agent_harness import AgentProcess
from tests.support.images import BuiltImage
from tests.support.router import TestRouter
from tests.web.deploy_support import (
    BackgroundLoad,
    background_load,
    container_names,
    get,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

MIB = 2**20
FAILPOINTS = "PAAS_AGENT_FAILPOINTS"
FAILPOINT_DIR = "PAAS_AGENT_FAILPOINT_DIR"


@pytest.fixture
def platform(platform: int, agent: AgentProcess, router: TestRouter) -> Iterator[int]:
    """The shared platform (tests/web/conftest.py), and after the test the
    agent as the next one needs it: running, with no failpoint."""
    # ``router`` is asked for here too: pytest orders by scope only the
    # fixtures it sees from the test, and the overridden platform's are not
    # among them. Set up after a test's ``settings``, the module's router
    # settings would go with that test's settings and the next test's routes
    # to another directory.
    yield platform
    agent.extra_env.pop(FAILPOINTS, None)
    if agent.proc is None or agent.proc.poll() is not None:
        agent.start()


def _app(user: Any, name: str, image: BuiltImage, web: int) -> App:
    app = app_create(user=user, team=user.personal_team, name=name)
    Formation.objects.create(app=app, process_type="web", count=web, memory_bytes=64 * MIB)
    release = Release.objects.create(
        app=app, number=1, image=image.pinned_ref, cause=ReleaseCause.IMAGE, process_types={}
    )
    assert deploy.release_deploy(release_id=release.pk) == ReleaseState.CURRENT
    return app


def _pids(agent: AgentProcess) -> dict[str, int | None]:
    status, body = agent.request("GET", "/v1/containers")
    assert status == 200, body
    return {c["name"]: c["pid"] for c in body["containers"]}


def _restart_frozen_at(agent: AgentProcess, point: str, directory: Path) -> Path:
    """Kill the agent and start it again, armed to freeze at ``point``
    (``POINT:CONTAINER``); returns the file it writes there."""
    agent.kill()
    agent.extra_env[FAILPOINTS] = point
    agent.extra_env[FAILPOINT_DIR] = str(directory)
    agent.start()
    return directory / point.partition(":")[0]


def _kill_when_frozen(agent: AgentProcess, marker: Path) -> None:
    wait_for(marker.exists, 60, "the agent to reach its failpoint")
    assert int(marker.read_text()) == agent.proc.pid  # type: ignore[union-attr]
    agent.kill()  # SIGKILL, right there


def _restart(agent: AgentProcess) -> None:
    agent.extra_env.pop(FAILPOINTS, None)
    agent.start()


def _in_background(action: Any) -> threading.Thread:
    """``action`` on a thread (the scale's service call, blocked on the frozen agent)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # handed to the test, which asserts there is none
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def _converged(app: App, wanted: list[str], agent: AgentProcess) -> bool:
    """One periodic pass of each (reconcile, then observe), then: exactly the
    wanted containers run, one row each, every web row healthy."""
    reconcile()
    hosts_observe()
    rows = list(Instance.objects.filter(app=app).values_list("container_name", "healthy"))
    running = {n: pid for n, pid in _pids(agent).items() if n.startswith(f"{app.name}.")}
    return (
        sorted(running) == wanted
        and all(running.values())
        and sorted(n for n, _ in rows) == wanted
        and all(healthy for _, healthy in rows)
    )


def _more_served(load: BackgroundLoad, n: int = 20) -> None:
    served = sum(load.bodies.values())
    wait_for(lambda: sum(load.bodies.values()) > served + n, 30, "load after the action")


@pytest.mark.parametrize("point", ["launch.before", "launch.after"])
def test_an_agent_killed_while_starting_a_container_drops_no_request_and_converges(
    alice: Any, platform: int, agent: AgentProcess, busybox: BuiltImage, point: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    name = "grow-" + point.split(".")[1]
    app = _app(alice, name, busybox, web=1)
    first = f"{name}.v1.web.1"
    new = f"{name}.v1.web.2"
    pid = _pids(agent)[first]

    with background_load(platform, f"{name}.localhost", duration_s=600) as load:
        wait_for(lambda: sum(load.bodies.values()) > 20, 30, "load through the router")
        # A restart of the agent under the running app: it re-adopts, nothing restarts.
        marker = _restart_frozen_at(agent, f"{point}:{new}", tmp_path)
        assert _pids(agent)[first] == pid
        _more_served(load)

        # A scale-up whose new container is half-started when the agent dies.
        Formation.objects.filter(app=app).update(count=2)
        scale = _in_background(lambda: deploy.app_converge(app_id=app.pk))
        _kill_when_frozen(agent, marker)
        scale.join(timeout=120)
        assert not scale.is_alive() and not scale.errors  # type: ignore[attr-defined]
        _more_served(load)  # with no agent at all
        # Frozen after `runc run`: the new container runs, no record says so yet.
        pid_file = agent.root / "containers" / new / "bundle" / "pid"
        half_started = int(pid_file.read_text()) if point == "launch.after" else None

        _restart(agent)
        restarted = time.monotonic()
        assert _pids(agent)[first] == pid  # re-adopted, not restarted
        if half_started is not None:
            assert _pids(agent)[new] == half_started  # adopted, not started twice
        wanted = [first, new]
        wait_for(lambda: _converged(app, wanted, agent), 90, "the app at its formation")
        converged_s = time.monotonic() - restarted
        _more_served(load)

    report = load.report
    assert report.failed == 0, report.errors[:5]
    assert _pids(agent)[first] == pid
    assert get(platform, f"{name}.localhost") == (200, busybox.index_body)
    print(f"agent killed at {point}: {report.ok} ok, {report.failed} failed, "
          f"{report.retries} retries; converged {converged_s:.1f} s after the restart")  # fmt: skip


def test_an_agent_killed_while_stopping_a_container_drops_no_request_and_converges(
    alice: Any, platform: int, agent: AgentProcess, busybox: BuiltImage, tmp_path: Path
) -> None:
    app = _app(alice, "shrink", busybox, web=2)
    first, surplus = "shrink.v1.web.1", "shrink.v1.web.2"
    pid = _pids(agent)[first]

    with background_load(platform, "shrink.localhost", duration_s=600) as load:
        wait_for(lambda: sum(load.bodies.values()) > 20, 30, "load through the router")
        marker = _restart_frozen_at(agent, f"stop.requested:{surplus}", tmp_path)
        assert _pids(agent)[first] == pid

        # A scale-down whose surplus container is being stopped when the agent dies.
        Formation.objects.filter(app=app).update(count=1)
        scale = _in_background(lambda: deploy.app_converge(app_id=app.pk))
        _kill_when_frozen(agent, marker)
        scale.join(timeout=120)
        assert not scale.is_alive() and not scale.errors  # type: ignore[attr-defined]
        _more_served(load)

        _restart(agent)
        restarted = time.monotonic()
        assert _pids(agent)[first] == pid
        wait_for(lambda: _converged(app, [first], agent), 90, "the app at its formation")
        converged_s = time.monotonic() - restarted
        _more_served(load)

    report = load.report
    assert report.failed == 0, report.errors[:5]
    assert surplus not in container_names(agent)
    assert _pids(agent)[first] == pid
    print(f"agent killed at stop.requested: {report.ok} ok, {report.failed} failed, "
          f"{report.retries} retries; converged {converged_s:.1f} s after the restart")  # fmt: skip


def test_an_agent_killed_while_starting_a_redeploy_fails_it_cleanly_and_converges(
    alice: Any, platform: int, agent: AgentProcess, busybox: BuiltImage, tmp_path: Path
) -> None:
    app = _app(alice, "redo", busybox, web=1)
    serving = "redo.v1.web.1"
    pid = _pids(agent)[serving]
    v2 = Release.objects.create(
        app=app, number=2, image=busybox.pinned_ref, cause=ReleaseCause.CONFIG, process_types={}
    )

    with background_load(platform, "redo.localhost", duration_s=600) as load:
        wait_for(lambda: sum(load.bodies.values()) > 20, 30, "load through the router")
        marker = _restart_frozen_at(agent, "launch.after:redo.v2.web.1", tmp_path)
        states: list[ReleaseState] = []
        rollout = _in_background(lambda: states.append(deploy.release_deploy(release_id=v2.pk)))
        _kill_when_frozen(agent, marker)
        rollout.join(timeout=120)
        assert not rollout.is_alive() and not rollout.errors  # type: ignore[attr-defined]
        # Failed with the reason; v1 stays current and keeps serving.
        assert states == [ReleaseState.FAILED]
        v2.refresh_from_db()
        assert v2.state == ReleaseState.FAILED and "did not answer" in v2.error
        _more_served(load)

        _restart(agent)
        restarted = time.monotonic()
        assert _pids(agent)[serving] == pid
        # v2's half-started container is adopted by the agent, then removed
        # with its row by the reconcile (its deploy could not reach the agent).
        wait_for(lambda: _converged(app, [serving], agent), 90, "only v1 left")
        converged_s = time.monotonic() - restarted
        _more_served(load)

    report = load.report
    assert report.failed == 0, report.errors[:5]
    assert [r.state for r in Release.objects.filter(app=app).order_by("number")] == [
        ReleaseState.CURRENT, ReleaseState.FAILED,
    ]  # fmt: skip
    print(f"agent killed mid-redeploy: {report.ok} ok, {report.failed} failed, "
          f"{report.retries} retries; converged {converged_s:.1f} s after the restart")  # fmt: skip
