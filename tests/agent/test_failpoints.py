"""The agent's failpoints: a no-op unless named, and then only for the
named subject; a hit leaves the pid in the marker file and blocks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from runtime_agent.host.failpoints import failpoint
from tests.support.processes import wait_until


def test_an_unnamed_point_or_another_subject_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    failpoint("launch.after", "a")  # nothing armed
    monkeypatch.setenv("PAAS_AGENT_FAILPOINTS", "stop.requested, launch.after:b")
    monkeypatch.setenv("PAAS_AGENT_FAILPOINT_DIR", str(tmp_path))
    failpoint("launch.after", "a")
    failpoint("launch.before", "b")
    assert list(tmp_path.iterdir()) == []


def test_a_named_point_marks_and_blocks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAAS_AGENT_FAILPOINTS", "stop.requested, launch.after:b")
    monkeypatch.setenv("PAAS_AGENT_FAILPOINT_DIR", str(tmp_path))
    # Left blocked for good, as in the agent (a daemon thread: it ends with pytest).
    frozen = threading.Thread(target=failpoint, args=("launch.after", "b"), daemon=True)
    frozen.start()
    marker = tmp_path / "launch.after"
    wait_until(marker.exists, timeout_s=10, what="the marker")
    assert marker.read_text() == str(os.getpid())
    assert [p.name for p in tmp_path.iterdir()] == ["launch.after"]
    frozen.join(timeout=0.2)
    assert frozen.is_alive()
