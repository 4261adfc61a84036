"""Noticing exits (ExitWatcher) and adoption after an agent restart, on real
processes and a real (empty) runc root."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from runtime_agent import wire
from runtime_agent.containers.adoption import adopt
from runtime_agent.containers.exits import ExitWatcher, reap_if_child, wait_for
from runtime_agent.containers.records import ContainerRecord
from runtime_agent.containers.supervision import StartFailed, Supervision
from runtime_agent.oci.runc import Runc
from runtime_agent.wire import ContainerState as S
from tests.support.processes import async_wait_until, wait_until


def spawn(*argv: str) -> int:
    # posix_spawn, not Popen: Popen's bookkeeping could reap the child itself.
    return os.posix_spawn(argv[0], list(argv), os.environ)


def orphan(*argv: str) -> int:
    """A process that is not our child (its shell parent exits at once)."""
    cmd = " ".join(argv) + " >/dev/null 2>&1 & echo $!"
    out = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, check=True, text=True)
    return int(out.stdout)


def poll_until_exited(watcher: ExitWatcher, name: str, pid: int) -> int | None:
    polls: list[tuple[bool, int | None]] = []

    def exited() -> bool:
        polls.append(watcher.poll(name, pid))  # a poll reaps: keep what it saw
        return polls[-1][0]

    wait_until(exited, what=f"the exit of {pid}")
    return polls[-1][1]


def record(sup: Supervision) -> ContainerRecord:
    request = wire.parse_create({"name": "web", "image": "127.0.0.1:5000/app:v1"})
    return ContainerRecord(name="web", request=request, sup=sup, prepared=True)


def test_a_child_is_reaped_with_its_exit_code():
    watcher = ExitWatcher()
    pid = spawn("/bin/sh", "-c", "exit 3")
    assert poll_until_exited(watcher, "web", pid) == 3


def test_a_child_killed_by_a_signal_reports_128_plus_the_signal():
    watcher = ExitWatcher()
    pid = spawn("/bin/sleep", "30")
    assert watcher.poll("web", pid) == (False, None)
    os.kill(pid, signal.SIGKILL)
    assert poll_until_exited(watcher, "web", pid) == 137


def test_a_process_that_is_not_our_child_is_watched_through_a_pidfd_and_its_code_is_unknown():
    watcher = ExitWatcher()
    pid = orphan("/bin/sleep", "30")
    try:
        assert watcher.poll("web", pid) == (False, None)
        assert watcher.poll("web", pid) == (False, None)  # still running, now via its pidfd
    finally:
        os.kill(pid, signal.SIGKILL)
    assert poll_until_exited(watcher, "web", pid) is None
    assert reap_if_child(pid) is None
    watcher.close()


async def test_the_exit_event_is_set_on_notify_and_renewed_on_expect():
    watcher = ExitWatcher()
    watcher.expect("web")
    first = watcher.event("web")
    assert not await wait_for(first, 0.01)
    watcher.notify("web")
    assert await wait_for(first, 0.01)
    watcher.expect("web")
    assert not watcher.event("web").is_set()
    watcher.forget("web")
    watcher.notify("web")  # a forgotten container: nothing to set, no error


async def test_adopting_a_container_caught_while_starting_that_runc_does_not_know_fails_its_start(
    tmp_path: Path,
):
    adoption = await adopt(record(Supervision(state=S.STARTING)), Runc(tmp_path), ExitWatcher())
    assert isinstance(adoption.event, StartFailed)
    assert not adoption.exited


async def test_adopting_a_created_container_that_never_ran_changes_nothing(tmp_path: Path):
    adoption = await adopt(record(Supervision(state=S.CREATED)), Runc(tmp_path), ExitWatcher())
    assert adoption.event is None and not adoption.exited and not adoption.finish_stop


async def test_a_running_container_that_runc_no_longer_knows_exited_while_the_agent_was_away(
    tmp_path: Path,
):
    pid = spawn("/bin/sh", "-c", "exit 5")
    # Until it is a zombie: exited, not yet reaped.
    await async_wait_until(lambda: Path(f"/proc/{pid}/stat").read_text().split(")")[1][1] == "Z")
    rec = record(Supervision(state=S.RUNNING, pid=pid))
    adoption = await adopt(rec, Runc(tmp_path), ExitWatcher())
    assert adoption.exited and adoption.exit_code == 5
