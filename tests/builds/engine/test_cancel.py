"""Cancelling a build mid-step: the step's container is killed, the build
ends with BuildCancelled, and no container, mount, netns or directory of it
is left, nor its cgroup (the web test does the same through a real Celery
worker)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.errors import BuildCancelled
from tests.builds.engine.support import mounts_under


@pytest.mark.root
def test_a_cancel_mid_step_kills_it_and_leaves_nothing(engine_config, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    marker = f"started-{uuid.uuid4().hex}"
    (src / "Dockerfile").write_text(f'FROM stack\nRUN echo {marker} && sleep 600\nCMD ["true"]\n')
    cancel = threading.Event()
    lines: list[str] = []
    parents = [h / engine_config.cgroup_parent for h in Path("/sys/fs/cgroup").iterdir()]

    def step_cgroups() -> list[Path]:
        return [c for p in parents if p.is_dir() for c in p.iterdir() if c.is_dir()]

    running: list[Path] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.strip() == marker:
            running.extend(step_cgroups())
            cancel.set()  # the step's own output: it is running, cancel it now

    with pytest.raises(BuildCancelled):
        build_image(
            source_dir=src, app=f"cancel-{uuid.uuid4().hex[:6]}", build_id="b", version=1,
            config=engine_config, log=log, cancel=cancel,
        )  # fmt: skip
    assert cancel.is_set()
    assert "-----> build cancelled" in "\n".join(lines)
    listing = subprocess.run(
        ["runc", "--root", str(engine_config.runc_root), "list", "--format", "json"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert not json.loads(listing.stdout or b"[]")
    assert mounts_under(engine_config.work_dir) == []
    assert list(engine_config.work_dir.iterdir()) == []
    assert not (engine_config.cache_dir / "layers").exists() or not any(
        p.name.startswith(".tmp-") for p in (engine_config.cache_dir / "layers").iterdir()
    )
    # No step cgroup (in any hierarchy) and no step network namespace either.
    assert running and step_cgroups() == []
    netns = Path("/var/run/netns")
    prefix = f"{engine_config.network.bridge}-"
    assert not [n for n in (os.listdir(netns) if netns.exists() else []) if n.startswith(prefix)]


@pytest.mark.root
def test_a_build_cancelled_before_it_starts_runs_nothing(engine_config, sample):
    cancel = threading.Event()
    cancel.set()
    lines: list[str] = []
    with pytest.raises(BuildCancelled):
        build_image(
            source_dir=sample("python-deps"), app=f"cancel-{uuid.uuid4().hex[:6]}",
            build_id="b", version=1, config=engine_config, log=lines.append, cancel=cancel,
        )  # fmt: skip
    assert not any("$ " in line for line in lines)
