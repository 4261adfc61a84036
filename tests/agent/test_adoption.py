"""An agent restart never stops a container: a new manager on the same data
root re-adopts it (same pid, logs continuous) and notices the containers
that exited while no manager was watching."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_agent.wire import ContainerState as S
from tests.support.agent_harness import AgentUnderTest, request, unique, wait_state
from tests.support.processes import async_wait_until

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.02; done"


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def raw_lines(agent: AgentUnderTest, name: str) -> int:
    """Lines the container wrote to its stdout file, tailed or not."""
    raw = agent.config.containers_dir / name / "logs" / "stdout.raw"
    return raw.read_bytes().count(b"\n")


async def numbers(manager, name):
    return [int(ln.line) async for ln in manager.logs(name)]


async def test_a_new_manager_keeps_the_container_running_with_continuous_logs(agent):
    first = await agent.manager()
    name = unique()
    info = await first.create(request(name, ["sh", "-c", COUNTER]))
    await async_wait_until(lambda: numbers(first, name), timeout_s=5, what="first lines")
    await first.shutdown()
    written = raw_lines(agent, name)
    # The container writes while no manager tails it.
    await async_wait_until(lambda: raw_lines(agent, name) > written + 10, what="untailed lines")
    assert os.path.exists(f"/proc/{info.pid}")

    second = await agent.manager()
    adopted = second.inspect(name)
    assert (adopted.state, adopted.pid) == (S.RUNNING, info.pid)
    before = len(await numbers(second, name))

    async def grown():
        got = await numbers(second, name)
        return got if len(got) > before + 20 else None

    got = await async_wait_until(grown, timeout_s=10, what="more lines")
    assert got == list(range(len(got)))  # nothing lost, nothing repeated


async def test_a_container_that_exited_while_the_manager_was_down_is_noticed(agent):
    first = await agent.manager()
    name = unique()
    info = await first.create(request(name, ["sh", "-c", "sleep 0.5; echo done; exit 4"]))
    await first.shutdown()
    assert info.pid is not None
    await async_wait_until(lambda: gone(info.pid), what="the exit with no manager")

    second = await agent.manager()
    info = second.inspect(name)
    assert info.state == S.EXITED
    # Still our child in this process (a same-process restart), so the code is known.
    assert info.exit_code == 4
    assert [ln.line async for ln in second.logs(name)] == ["done"]
    assert agent.runc.state(name) is None


async def test_a_container_that_died_while_the_manager_was_down_is_restarted_by_policy(agent):
    first = await agent.manager()
    name = unique()
    script = "echo start; sleep 0.5; exit 1"
    info = await first.create(request(name, ["sh", "-c", script], restart="always"))
    await first.shutdown()
    assert info.pid is not None
    await async_wait_until(lambda: gone(info.pid), what="the death with no manager")

    second = await agent.manager()

    def restarted():
        now = second.inspect(name)
        return now.pid not in (None, info.pid) and now

    again = await async_wait_until(restarted, timeout_s=10, what="a restart")
    assert again.restart_count == 1


def run_agent(agent: AgentUnderTest, *args: str, **popen: object) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.support.agent_harness", json.dumps(agent.to_json())]
    return subprocess.Popen([*argv, *args], cwd=REPO, stdout=subprocess.PIPE, text=True, **popen)  # type: ignore[call-overload]


async def test_an_agent_in_another_process_adopts_a_container_it_did_not_start(agent):
    name = unique()
    creator = run_agent(
        agent,
        "create",
        json.dumps({"name": name, "image": "local/busybox:1", "cmd": ["sh", "-c", COUNTER]}),
    )
    out, _ = await asyncio.to_thread(creator.communicate, timeout=60)
    assert creator.returncode == 0
    created = json.loads(out)
    pid = created["pid"]
    try:
        assert created["state"] == "running"
        assert os.path.exists(f"/proc/{pid}")  # the creating agent is gone, the container is not

        watcher = run_agent(agent, "watch", name, "20")
        assert watcher.stdout is not None
        adopted = json.loads(await asyncio.to_thread(watcher.stdout.readline))
        assert (adopted["state"], adopted["pid"]) == ("running", pid)
        os.kill(pid, signal.SIGKILL)  # dies while the second agent is watching it
        out, _ = await asyncio.to_thread(watcher.communicate, timeout=30)
        final = json.loads(out)
        # Not the watching agent's child: it sees the exit, but not the status.
        assert final["state"] == "exited"
        assert final["exit_code"] is None
        assert agent.runc.state(name) is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # if this process was its subreaper


async def test_a_restarted_manager_can_still_stop_an_adopted_container(agent):
    first = await agent.manager()
    name = unique()
    script = "trap 'exit 0' TERM; while true; do sleep 0.05; done"
    await first.create(request(name, ["sh", "-c", script]))
    await first.shutdown()
    second = await agent.manager()
    await second.stop(name, 5.0)
    info = await wait_state(second, name, S.EXITED)
    assert info.pid is None
    await second.remove(name)
    assert not (agent.config.containers_dir / name).exists()


async def test_an_exit_while_no_agent_process_runs_is_noticed_with_an_unknown_code(agent):
    name = unique()
    body = {"name": name, "image": "local/busybox:1", "cmd": ["sh", "-c", "sleep 0.5; exit 4"]}
    creator = run_agent(agent, "create", json.dumps(body))
    out, _ = await asyncio.to_thread(creator.communicate, timeout=60)
    assert creator.returncode == 0
    pid = json.loads(out)["pid"]
    try:
        await async_wait_until(lambda: gone(pid), what="the exit with no agent at all")
        watcher = run_agent(agent, "watch", name, "0")
        out, _ = await asyncio.to_thread(watcher.communicate, timeout=30)
        noticed = json.loads(out.splitlines()[0])
        assert noticed["state"] == "exited"
        assert noticed["exit_code"] is None  # its parent was not the new agent
        assert noticed["finished_at"] is not None
        assert agent.runc.state(name) is None
    finally:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
