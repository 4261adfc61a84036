"""The worker as scripts/up's Procfile runs it (``--pool threads
--concurrency 4``: one process, four tasks at a time, at most three of
them builds and deploys, two of them builds, see paas/core/work_slots.py)
runs two builds at once, each in its own runc step, and cancelling both
stops both and leaves no step container behind (real worker, real runc)."""

from __future__ import annotations

import pytest

from paas.builds.models import BuildState
from paas.builds.services import build_cancel
from tests.web.build_slots_support import (
    CANCELLED,
    STEP_STARTED,
    procfile_pool,
    slow_dockerfile,
    steps_running,
    upload_builds,
    wait_log,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def test_two_builds_run_at_once_and_both_cancel_cleanly(client, alice, workers, build_env):
    pool = procfile_pool()
    assert pool == ("--pool", "threads", "--concurrency", "4")
    workers.start(pool)
    builds = upload_builds(client, alice, ("one", "two"), slow_dockerfile())
    for build in builds:  # both steps started: neither waits for the other
        wait_log(build, STEP_STARTED, 240)
    assert len(steps_running(build_env)) == 2

    for build in builds:
        assert build_cancel(build=build)
    for build in builds:
        wait_log(build, CANCELLED, 60)
        build.refresh_from_db()
        assert build.state == BuildState.CANCELLED
    assert steps_running(build_env) == []
