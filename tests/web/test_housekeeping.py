"""The builder's housekeeping as the beat task runs it: scratch directories
of finished builds go (a running build's stays), the cache is evicted to
PAAS_BUILD_CACHE_MAX_BYTES, and the usage command says what is used by what."""

from __future__ import annotations

import io
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from paas.applications.services import app_create
from paas.builds.housekeeping import builds_housekeep
from paas.builds.models import Build, BuildState
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def dirs(settings, tmp_path: Path) -> Path:
    settings.BUILD_DIR = tmp_path / "builds"
    settings.PAAS_BUILD_CACHE_DIR = tmp_path / "cache"
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.PAAS_REGISTRY_CONFIG = ""
    settings.PAAS_BUILD_CACHE_MAX_BYTES = 200 * 1024
    return tmp_path


def make_build(app, number: int, state: BuildState, finished_ago_s: float | None) -> Build:
    finished = timezone.now() - timedelta(seconds=finished_ago_s) if finished_ago_s else None
    return Build.objects.create(
        app=app, number=number, archive_name="a.tar", archive_path="/nonexistent",
        state=state, finished_at=finished,
    )  # fmt: skip


def scratch(root: Path, name: str) -> Path:
    path = root / "builds" / name / "source"
    path.mkdir(parents=True)
    (path / "app.py").write_text("x")
    return path.parent


def test_finished_builds_lose_their_directories_running_ones_keep_them(dirs, alice):
    app = app_create(user=alice, team=alice.personal_team, name="tidy")
    done = scratch(dirs, str(make_build(app, 1, BuildState.FAILED, 3600).pk))
    just_done = scratch(dirs, str(make_build(app, 2, BuildState.SUCCEEDED, 5).pk))
    running = scratch(dirs, str(make_build(app, 3, BuildState.BUILDING, None).pk))
    orphan = scratch(dirs, str(uuid.uuid4()))  # its build row is gone
    engine_own = scratch(dirs, "work")

    report = builds_housekeep()
    assert sorted(report.build_dirs_removed) == sorted([done.name, orphan.name])
    assert not done.exists() and not orphan.exists()
    assert just_done.exists() and running.exists() and engine_own.exists()
    assert "registry GC skipped" in report.summary()


def test_old_uploads_of_finished_builds_are_deleted(dirs, alice, settings):
    settings.PAAS_UPLOAD_RETENTION_DAYS = 7
    app = app_create(user=alice, team=alice.personal_team, name="uploads")
    (dirs / "uploads").mkdir()
    builds = []
    for number, (state, ago) in enumerate(
        [(BuildState.SUCCEEDED, 8 * 86400), (BuildState.FAILED, 86400), (BuildState.QUEUED, None)],
        start=1,
    ):
        archive = dirs / "uploads" / f"{number}.upload"
        archive.write_bytes(b"x")
        build = make_build(app, number, state, ago)
        Build.objects.filter(pk=build.pk).update(archive_path=str(archive))
        builds.append(archive)
    outside = dirs / "elsewhere.tar"
    outside.write_bytes(b"x")
    stray = make_build(app, 4, BuildState.FAILED, 30 * 86400)
    Build.objects.filter(pk=stray.pk).update(archive_path=str(outside))

    report = builds_housekeep()
    assert report.uploads_removed == 1
    assert [a.exists() for a in builds] == [False, True, True]
    assert outside.exists()  # not a file of the upload directory: never touched


def test_the_cache_is_evicted_to_its_budget_oldest_first(dirs):
    pip = dirs / "cache" / "downloads" / "pip" / "http"
    pip.mkdir(parents=True)
    now = time.time()
    for i in range(6):  # 6 x 64 KiB against a 200 KiB budget
        (pip / f"f{i}").write_bytes(os.urandom(64 * 1024))
        os.utime(pip / f"f{i}", (now - 10_000 + i, now - 10_000 + i))
    report = builds_housekeep()
    assert sorted(p.name for p in pip.iterdir()) == ["f3", "f4", "f5"]
    assert report.eviction.after_bytes <= 200 * 1024


def test_the_usage_command_names_what_uses_the_disk(dirs):
    (dirs / "cache" / "layers" / ("a" * 64)).mkdir(parents=True)
    (dirs / "cache" / "layers" / ("a" * 64) / "layer.tar.gz").write_bytes(os.urandom(8192))
    out = io.StringIO()
    call_command("build_disk_usage", stdout=out)
    text = out.getvalue()
    assert "dependency layers (evictable)" in text
    assert "uploaded source archives" in text
    assert "evictable cache: 8.0 KiB of a 200.0 KiB budget" in text
    assert f"8.0 KiB  layer  layers/{'a' * 64}" in text
    out = io.StringIO()
    call_command("build_housekeeping", stdout=out)
    assert "cache" in out.getvalue()


def test_the_usage_command_says_which_team_uses_the_cache(dirs, alice):
    team = alice.personal_team
    layer = dirs / "cache" / "teams" / f"team-{team.pk}" / "layers" / ("b" * 64)
    layer.mkdir(parents=True)
    (layer / "layer.tar.gz").write_bytes(os.urandom(16384))
    pip = dirs / "cache" / "teams" / "team-999999" / "downloads" / "pip"  # a deleted team
    pip.mkdir(parents=True)
    (pip / "wheel").write_bytes(os.urandom(4096))
    shared = dirs / "cache" / "downloads" / "npm"
    shared.mkdir(parents=True)
    (shared / "tarball").write_bytes(os.urandom(8192))
    out = io.StringIO()
    call_command("build_disk_usage", stdout=out)
    by_team = out.getvalue().split("evictable cache by team:\n")[1].splitlines()
    assert [line.split(None, 2)[2] for line in by_team] == [
        f"{team.name} (teams/team-{team.pk})",
        "(shared)",
        "teams/team-999999 (no such team)",
    ]
    assert by_team[0].split()[:2] == ["16.0", "KiB"]
    assert f"layer  teams/team-{team.pk}/layers/{'b' * 64}" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_celery_beat_runs_the_housekeeping_on_a_real_worker(alice, workers, build_env):
    """celery beat (its shortest allowed interval) sends builds.housekeep to a
    real worker, which removes a finished build's scratch directory."""
    app = app_create(user=alice, team=alice.personal_team, name="beat")
    finished = make_build(app, 1, BuildState.SUCCEEDED, 3600)
    build_dir = Path(build_env["PAAS_BUILD_DIR"]) / str(finished.pk) / "source"
    build_dir.mkdir(parents=True)
    workers.env.update(
        PAAS_HOUSEKEEPING_INTERVAL="10",
        PAAS_REGISTRY_CONFIG="",
        # The shared test cache is other sessions' too: evict nothing of it.
        PAAS_BUILD_CACHE_MAX_BYTES=str(1 << 50),
    )
    workers.start()
    with workers.beat():
        wait_until(
            lambda: not build_dir.parent.exists(),
            timeout_s=90,
            what="the housekeeping to remove the build's directory",
            poll_s=0.2,
        )


def test_no_registry_gc_while_a_blob_upload_is_open(dirs, settings):
    """A push from outside the platform (an open upload in the registry's
    storage) holds the collection off; the next pass collects."""
    from paas.builds.engine.housekeeping import gc_needed, mark_gc_needed

    storage = dirs / "registry-storage"
    config = dirs / "config.yml"
    config.write_text(f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {storage}}}}}\n")
    upload = storage / "docker/registry/v2/repositories/stacks/x/_uploads" / str(uuid.uuid4())
    upload.mkdir(parents=True)
    (upload / "startedat").write_text("now")
    settings.PAAS_REGISTRY_CONFIG = str(config)
    settings.PAAS_REGISTRY_BINARY = "/bin/false"  # would fail the pass if it ran
    mark_gc_needed(dirs / "cache")

    report = builds_housekeep()
    assert "1 blob uploads are in flight" in report.registry_gc_skipped
    assert gc_needed(dirs / "cache")  # still to do

    old = time.time() - 3600  # the push died an hour ago: not in flight
    os.utime(upload / "startedat", (old, old))
    os.utime(upload, (old, old))
    settings.PAAS_REGISTRY_BINARY = "/bin/true"  # stands in for the registry here
    report = builds_housekeep()
    assert report.registry_gc is not None and report.registry_gc.blobs_deleted == 0
    assert not gc_needed(dirs / "cache")
