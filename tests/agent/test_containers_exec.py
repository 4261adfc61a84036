"""ExecRunner on its own, against a real runc container: output streamed as
it comes, then the exit code; a command past its time or left by its caller
is killed in the container, and its pid file goes with it."""

from __future__ import annotations

import pytest

from runtime_agent.containers.exec import ExecRunner
from runtime_agent.containers.records import Store
from runtime_agent.wire import ExecRequest
from tests.support.rootfs import Harness

pytestmark = pytest.mark.root


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path / "h")
    yield h
    h.cleanup()


@pytest.fixture
def running(harness, tmp_path):
    """(runner, container id) for a container that sleeps."""
    started = harness.run(["sleep", "100"])
    harness.wait_status(started.cid, "running")
    store = Store(tmp_path / "containers")
    store.container_dir(started.cid).mkdir(parents=True)
    return ExecRunner(harness.runc, store), started.cid, harness, store


def sleepers(harness: Harness, cid: str) -> int:
    _, out, _ = harness.exec(cid, ["ps"])
    return out.count("sleep 30")


async def test_it_streams_stdout_and_stderr_then_the_exit_code(running):
    runner, cid, _, store = running
    req = ExecRequest(cmd=["sh", "-c", "echo out; echo err >&2; exit 5"], env={"X": "1"})
    items = [item async for item in runner.start(cid, req)]
    assert items[-1] == ("exit", 5)
    assert ("stdout", b"out\n") in items and ("stderr", b"err\n") in items
    assert list(store.container_dir(cid).glob("exec-*.pid")) == []


async def test_a_command_past_its_time_is_killed_in_the_container(running):
    runner, cid, harness, store = running
    req = ExecRequest(cmd=["sh", "-c", "echo started; exec sleep 30"], timeout_s=0.5)
    items = [item async for item in runner.start(cid, req)]
    assert items[0] == ("stdout", b"started\n")
    assert items[-1] == ("exit", 137)  # SIGKILL, not the end of the sleep
    assert sleepers(harness, cid) == 0
    assert list(store.container_dir(cid).glob("exec-*.pid")) == []


async def test_a_command_whose_caller_goes_away_is_killed_in_the_container(running):
    runner, cid, harness, store = running
    stream = runner.start(cid, ExecRequest(cmd=["sh", "-c", "echo started; exec sleep 30"]))
    assert await anext(stream) == ("stdout", b"started\n")
    assert sleepers(harness, cid) == 1
    await stream.aclose()  # the client hung up
    assert sleepers(harness, cid) == 0
    assert list(store.container_dir(cid).glob("exec-*.pid")) == []
