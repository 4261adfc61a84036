"""A build directory whose disk fills up: the build fails saying so (not as
the tenant's exit code or an internal error), leaves nothing behind, and the
next build works once there is space again."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.errors import BuildFailed
from tests.builds.engine.support import mounts_under
from tests.support.loopfs import loop_filesystem

pytestmark = pytest.mark.root


def _dockerfile(tmp_path: Path, name: str, text: str) -> Path:
    src = tmp_path / name
    src.mkdir()
    (src / "Dockerfile").write_text(text)
    return src


def test_a_step_that_fills_the_build_disk_fails_with_out_of_disk_space(engine_config, tmp_path):
    with loop_filesystem(tmp_path / "disk", size_mib=48) as disk:
        config = replace(engine_config, work_dir=disk / "work")
        hog = _dockerfile(
            tmp_path, "hog", "FROM stack\nRUN dd if=/dev/zero of=/big bs=1M count=200\n"
        )
        lines: list[str] = []
        with pytest.raises(BuildFailed) as failed:
            build_image(source_dir=hog, app=f"hog-{uuid.uuid4().hex[:6]}", build_id="b1",
                        version=1, config=config, log=lines.append)  # fmt: skip

        assert "out of disk space on the build host" in failed.value.message
        assert failed.value.step.startswith("RUN dd")
        assert "out of disk space" in "\n".join(lines)
        # Its files are gone, so the space is back ...
        assert mounts_under(config.work_dir) == [] and list(config.work_dir.iterdir()) == []
        st = os.statvfs(disk)
        assert st.f_bavail * st.f_frsize > 32 * 1024 * 1024
        # ... and the next build on the same disk works.
        small = _dockerfile(tmp_path, "small", "FROM stack\nRUN echo ok > /ok\nCMD cat /ok\n")
        result = build_image(source_dir=small, app=f"small-{uuid.uuid4().hex[:6]}",
                             build_id="b2", version=1, config=config, log=_quiet)  # fmt: skip
        assert result.digest.startswith("sha256:")


def test_a_step_failing_with_room_to_spare_is_not_blamed_on_the_disk(engine_config, tmp_path):
    with loop_filesystem(tmp_path / "disk", size_mib=48) as disk:
        config = replace(engine_config, work_dir=disk / "work")
        src = _dockerfile(tmp_path, "fails", "FROM stack\nRUN exit 4\n")
        with pytest.raises(BuildFailed) as failed:
            build_image(source_dir=src, app=f"fails-{uuid.uuid4().hex[:6]}", build_id="b3",
                        version=1, config=config, log=_quiet)  # fmt: skip
        assert failed.value.exit_code == 4
        assert "disk" not in failed.value.message


def _quiet(line: str) -> None:
    """The build log, unread."""
