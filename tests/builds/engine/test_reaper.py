"""A worker killed mid-build leaves a container, a mount and a netns behind;
the reaper removes them without touching builds still running."""

from __future__ import annotations

import multiprocessing
import os
import signal
import uuid
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from paas.builds.engine.gate import GATE_ROOT
from paas.builds.engine.reaper import reap_stale_builds
from runtime_agent.oci.runc import Runc
from tests.builds.engine.support import mounts_under
from tests.support.processes import wait_until


def _build_in_child(config, source: Path) -> None:
    try:
        build_image(
            source_dir=source, app=f"killed-{uuid.uuid4().hex[:6]}", build_id="b", version=1,
            config=config, log=lambda line: None,
        )  # fmt: skip
    finally:
        os._exit(0)


@pytest.mark.root
def test_the_reaper_cleans_up_after_a_killed_worker(engine_config, tmp_path, build_network):
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM stack\nRUN sleep 120\n")
    runc = Runc(engine_config.runc_root)
    child = multiprocessing.get_context("fork").Process(
        target=_build_in_child, args=(engine_config, src)
    )
    child.start()
    assert child.pid is not None
    pid = child.pid
    try:
        wait_until(lambda: engine_config.runc_root.exists() and runc.list() != [], timeout_s=60)
        assert reap_stale_builds(engine_config) == []  # alive: not touched
        os.kill(pid, signal.SIGKILL)
        child.join(timeout=10)
        # The step's overlay and binds live in its gate (steps.py, gate.py).
        (cid_file,) = engine_config.work_dir.glob("build-*/step-*/cid")
        step_gate = GATE_ROOT / cid_file.read_text().strip()
        assert mounts_under(step_gate) != []
        assert build_network[1].attachments() != {}

        reaped = reap_stale_builds(engine_config)

        assert len(reaped) == 1
        wait_until(lambda: runc.list() == [], timeout_s=10)
        assert mounts_under(engine_config.work_dir) == []
        assert mounts_under(step_gate) == []
        assert not step_gate.exists()
        assert build_network[1].attachments() == {}
        assert list(engine_config.work_dir.iterdir()) == []
    finally:
        if child.is_alive():
            os.kill(pid, signal.SIGKILL)
        reap_stale_builds(engine_config)
