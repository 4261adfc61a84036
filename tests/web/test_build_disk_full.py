"""The build directory's disk fills while the upload is extracted: the build
fails with "out of disk space" (the operator's to fix), not as an internal
error or the archive's fault, and the next build extracts fine once there
is room."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from paas.applications.services import app_create
from paas.builds import services
from paas.builds.archive import extract_archive
from paas.builds.models import Build, BuildState
from tests.support.loopfs import fill, loop_filesystem
from tests.web.archives import targz

pytestmark = [pytest.mark.django_db, pytest.mark.root]


def _build(app: Any, number: int, archive: Path) -> Build:
    return Build.objects.create(
        app=app, number=number, archive_name="a.tar.gz", archive_path=str(archive)
    )


def test_extracting_onto_a_full_disk_fails_the_build_saying_so(
    alice: Any, settings: Any, tmp_path: Path
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="full")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(targz({"data.bin": os.urandom(2_000_000), "app.py": b"x = 1\n"}))
    with loop_filesystem(tmp_path / "disk", size_mib=16) as disk:
        settings.BUILD_DIR = disk / "builds"
        filler = fill(disk, leave_bytes=256 * 1024)
        first = _build(app, 1, archive)
        services.build_run(build_id=str(first.pk))
        first.refresh_from_db()
        assert first.state == BuildState.FAILED
        assert first.error.startswith("out of disk space on the build host"), first.error
        assert "internal error" not in first.error
        assert list((disk / "builds").iterdir()) == []  # its half-extracted source is gone

        # Once the operator frees space, the same archive extracts there (the
        # engine-level test builds on a disk that was full a moment before).
        os.unlink(filler)
        source = Path(settings.BUILD_DIR) / "again" / "source"
        extract_archive(archive, source, limits=services._archive_limits(), log=_quiet)
        assert (source / "data.bin").stat().st_size == 2_000_000


def _quiet(line: str) -> None:
    """The build log, unread."""
