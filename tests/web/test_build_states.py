"""Build state changes are atomic and tasks are safe to run twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from paas.applications.services import app_create
from paas.builds import services
from paas.builds.models import Build, BuildState

pytestmark = pytest.mark.django_db


@pytest.fixture
def build(alice, tmp_path: Path) -> Build:
    app = app_create(user=alice, team=alice.personal_team, name="states")
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"")
    return Build.objects.create(app=app, number=1, archive_name="a.tar", archive_path=str(archive))


def test_only_one_claim_wins(build):
    assert services.build_claim(build_id=str(build.pk)) is True
    assert services.build_claim(build_id=str(build.pk)) is False
    build.refresh_from_db()
    assert build.state == BuildState.BUILDING
    assert build.lease_expires_at is not None


def test_running_a_finished_build_again_changes_nothing(build):
    build.state = BuildState.SUCCEEDED
    build.save()
    services.build_run(build_id=str(build.pk))
    build.refresh_from_db()
    assert build.state == BuildState.SUCCEEDED
    assert build.log_lines.count() == 0


def test_a_build_whose_worker_died_is_failed_by_the_sweep(build):
    services.build_claim(build_id=str(build.pk))
    Build.objects.filter(pk=build.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.builds_fail_abandoned() == 1
    build.refresh_from_db()
    assert build.state == BuildState.FAILED
    assert "worker" in build.error


def test_failing_a_dead_build_asks_for_the_registry_gc(build, settings, tmp_path: Path):
    """Its worker may have died pushing: blobs no manifest will reference
    (tests/web/test_fault_build_push_gc.py runs the collection for real)."""
    from paas.builds.engine.housekeeping import gc_needed

    settings.PAAS_BUILD_CACHE_DIR = str(tmp_path / "cache")
    services.build_claim(build_id=str(build.pk))
    assert services.builds_fail_abandoned() == 0
    assert not gc_needed(tmp_path / "cache")  # a live build asks nothing
    Build.objects.filter(pk=build.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.builds_fail_abandoned() == 1
    assert gc_needed(tmp_path / "cache")


def test_the_sweep_leaves_builds_with_a_live_lease_alone(build):
    services.build_claim(build_id=str(build.pk))
    assert services.builds_fail_abandoned() == 0
    build.refresh_from_db()
    assert build.state == BuildState.BUILDING


def test_a_queued_or_running_build_can_be_cancelled_but_not_a_finished_one(build, alice):
    assert services.build_cancel(build=build) is True
    build.refresh_from_db()
    assert build.state == BuildState.CANCELLED
    running = Build.objects.create(
        app=build.app, number=2, archive_name="a.tar", archive_path=build.archive_path
    )
    services.build_claim(build_id=str(running.pk))
    assert services.build_cancel(build=running) is True
    running.refresh_from_db()
    assert (running.state, running.lease_expires_at) == (BuildState.CANCELLED, None)
    done = Build.objects.create(
        app=build.app, number=3, archive_name="a.tar", archive_path=build.archive_path
    )
    services.build_claim(build_id=str(done.pk))
    services.build_finish(build_id=str(done.pk), state=BuildState.FAILED, error="x")
    assert services.build_cancel(build=done) is False


def test_finishing_a_cancelled_build_does_not_resurrect_it(build):
    services.build_cancel(build=build)
    assert services.build_finish(build_id=str(build.pk), state=BuildState.SUCCEEDED) is False
    build.refresh_from_db()
    assert build.state == BuildState.CANCELLED
