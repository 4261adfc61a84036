"""Issue 13, fault 1 (builds): a real Celery worker SIGKILLed in the middle
of a build, at the source's extraction, inside a running RUN step and
between the layers' push and the manifest's. A fresh worker and a real beat
(short sweeps) take over; the build then ends failed, once, saying why, its
image is never tagged, and nothing of it is left on the host: no step
container, mount, netns, veth, nft rule or directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.applications.models import Release
from paas.applications.services import app_create
from paas.builds.models import Build, BuildState
from tests.support.registry import TestRegistry
from tests.web.archives import targz
from tests.web.deploy_support import wait_for
from tests.web.fault_support import (
    Steps,
    build_leftovers,
    kill,
    kill_at,
    running_steps,
    stop_worker_at,
    take_over,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

# The step prints "step-42" (its command line, also logged, does not).
SLOW_STEP = b'FROM stack\nRUN echo "step-$((40 + 2))" && sleep 600\nCMD ["true"]\n'
QUICK_STEP = b'FROM stack\nRUN echo built > /built\nCMD ["true"]\n'


def _upload(client: Any, user: Any, app: str, dockerfile: bytes) -> Build:
    app_create(user=user, team=user.personal_team, name=app)
    client.force_login(user)
    archive = SimpleUploadedFile("src.tar.gz", targz({"Dockerfile": dockerfile}))
    response = client.post(f"/apps/{app}/builds", {"source": archive},
                           HTTP_ACCEPT="application/json")  # fmt: skip
    assert response.status_code == 201, response.content
    return Build.objects.get(pk=response.json()["build"])


def _ended(build: Build) -> Build | None:
    build.refresh_from_db()
    return build if build.state not in (BuildState.QUEUED, BuildState.BUILDING) else None


def _settled(build: Build, build_env: dict[str, str], steps: Steps) -> bool:
    """Whether the build has ended and nothing of it is left."""
    return _ended(build) is not None and not build_leftovers(build_env, str(build.pk), steps)


@pytest.mark.parametrize("point", ["build.extract", "build.step", "build.push"])
def test_a_worker_killed_mid_build_leaves_a_failed_build_and_nothing_else(
    point: str, client: Any, alice: Any, workers: Any, build_env: dict[str, str],
    registry: TestRegistry, tmp_path: Path,
) -> None:  # fmt: skip
    app = f"dies-at-{point.split('.')[1]}"
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = stop_worker_at(workers, point, markers)
    build = _upload(client, alice, app, SLOW_STEP if point == "build.step" else QUICK_STEP)
    if point == "build.step":  # no failpoint: the step's own output says it runs
        wait_for(lambda: build.log_lines.filter(text__contains="step-42").exists(), 240,
                 "the step to run")  # fmt: skip
        steps = running_steps(build_env)
        # Attached and mounted: its netns, veth, rules and overlay are there to leave behind.
        assert steps.cids and steps.addresses
        kill(worker)
    else:
        kill_at(worker, point, markers)
        steps = running_steps(build_env)
    build.refresh_from_db()
    assert build.state == BuildState.BUILDING
    # The dead worker left its work behind (so the check below can fail).
    assert build_leftovers(build_env, str(build.pk), steps)

    with take_over(workers, tmp_path):
        try:
            wait_for(lambda: _settled(build, build_env, steps), 120, "the build to settle")
        except AssertionError:
            left = build_leftovers(build_env, str(build.pk), steps)
            raise AssertionError(f"not settled: build {build.state}, left {left}") from None

    build.refresh_from_db()
    assert build.state == BuildState.FAILED
    assert build.error == "The worker running this build stopped; start the build again."
    assert build.finished_at is not None and build.version is None
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    assert "Build succeeded" not in log and "cancelled" not in log
    assert not Release.objects.filter(build=build).exists()  # nothing to deploy
    assert Path(build.archive_path).is_file()  # the upload is kept: it can be built again
    with registry.client() as images:
        assert images.list_tags(app) == []  # half-pushed blobs, never a tagged image
