"""cgroup limits on real containers, and the figures read back from the
cgroup files: OOM kill, pids limit, CPU quota, stats."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runtime_agent.host.errors import NotFound
from runtime_agent.oci import cgroups
from runtime_agent.wire import Limits
from tests.support.processes import wait_until
from tests.support.rootfs import Harness

pytestmark = pytest.mark.root

MiB = 1024 * 1024


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path / "h")
    yield h
    h.cleanup()


def test_it_oom_kills_a_memory_hog_and_says_so(harness):
    started = harness.run(
        ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"],
        limits=Limits(memory_bytes=32 * MiB),
    )
    harness.wait_status(started.cid, "stopped", timeout_s=30)
    assert cgroups.oom_killed(started.cgroups_path) is True
    assert "records out" not in started.stderr.read_text()  # dd never finished


def test_it_does_not_call_a_clean_exit_an_oom_kill(harness):
    started = harness.run(
        ["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=8"],
        limits=Limits(memory_bytes=32 * MiB),
    )
    harness.wait_status(started.cid, "stopped", timeout_s=30)
    assert cgroups.oom_killed(started.cgroups_path) is False
    assert "8+0 records out" in started.stderr.read_text()


def test_it_forgets_the_oom_flag_with_the_container(harness):
    started = harness.run(["true"], limits=Limits(memory_bytes=32 * MiB))
    harness.wait_status(started.cid, "stopped")
    harness.runc.delete(started.cid)
    with pytest.raises(NotFound):
        cgroups.oom_killed(started.cgroups_path)
    with pytest.raises(NotFound):
        cgroups.stats(started.cgroups_path)


def test_it_stops_a_fork_bomb_at_the_pids_limit(harness):
    limit = 24
    # busybox sh gives up at its first failed fork, so pid 1 keeps starting
    # new bombers: the container keeps pushing against the limit throughout.
    bomber = "while :; do sleep 100 & done"
    started = harness.run(
        ["sh", "-c", f"while :; do sh -c '{bomber}' 2>/dev/null; done"],
        limits=Limits(pids=limit),
    )
    highest = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        highest = max(highest, cgroups.stats(started.cgroups_path).pids)
        time.sleep(0.01)
    assert highest == limit  # it did reach the limit, and never passed it
    events = Path("/sys/fs/cgroup/pids", started.cgroups_path.lstrip("/"), "pids.events")
    assert int(events.read_text().split()[1]) > 10  # forks were refused, again and again
    assert harness.runc.state(started.cid)["status"] == "running"
    # The host can still stop it.
    assert harness.runc.kill(started.cid, "KILL", all=True)
    harness.wait_status(started.cid, "stopped", timeout_s=10)


def test_it_applies_a_default_pids_limit(harness):
    started = harness.run(["sleep", "100"])
    code, out, _ = harness.exec(started.cid, ["cat", "/sys/fs/cgroup/pids/pids.max"])
    assert (code, out) == (0, "512\n")


def test_it_holds_a_busy_loop_to_its_cpu_quota(harness):
    started = harness.run(
        ["sh", "-c", "while :; do :; done"],
        limits=Limits(cpu_quota_us=20_000, cpu_period_us=100_000, cpu_shares=512),
    )
    harness.wait_status(started.cid, "running")
    time.sleep(0.3)  # past the first period
    before = cgroups.stats(started.cgroups_path).cpu_usage_ns
    t0 = time.monotonic()
    time.sleep(1.0)
    used = cgroups.stats(started.cgroups_path).cpu_usage_ns - before
    share = used / ((time.monotonic() - t0) * 1e9)
    assert 0.05 < share < 0.3  # 20% of one CPU, not the 100% it would take
    shares = Path("/sys/fs/cgroup/cpu", started.cgroups_path.lstrip("/"), "cpu.shares")
    assert shares.read_text().strip() == "512"


def test_it_reports_sane_stats(harness):
    started = harness.run(
        ["sh", "-c", "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done; echo done; sleep 100"],
        limits=Limits(memory_bytes=64 * MiB),
    )
    harness.wait_status(started.cid, "running")
    first = cgroups.stats(started.cgroups_path)
    assert first.memory_limit_bytes == 64 * MiB
    assert 0 < first.memory_bytes < 64 * MiB
    assert first.pids == 1
    wait_until(lambda: started.output() == "done\n", timeout_s=10, what="the loop to finish")
    later = cgroups.stats(started.cgroups_path)
    assert later.pids == 1
    assert later.cpu_usage_ns > first.cpu_usage_ns > 0
    assert later.cpu_usage_ns > 10_000_000  # the loop burned at least 10 ms


def test_it_reports_no_memory_limit_when_none_was_set(harness):
    started = harness.run(["sleep", "100"])
    assert cgroups.stats(started.cgroups_path).memory_limit_bytes is None
