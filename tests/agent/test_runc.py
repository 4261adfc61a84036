"""The runc wrapper against the real runc: lifecycle, exec, exit codes,
errors, and the CVE-2024-21626 probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_agent.host.errors import CommandFailed, Conflict, NotFound, UnsafeRuntime
from runtime_agent.oci import runc as runc_mod
from runtime_agent.oci.runc import Runc, check_runtime_safe, stop_exec
from tests.support.processes import wait_until
from tests.support.rootfs import Harness, new_id

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path / "h")
    yield h
    h.cleanup()


# A separate process that, like the agent, is a child subreaper: the detached
# container init is re-parented to it, so it can waitpid() for the exit code.
SUBREAPER = """
import ctypes, json, os, sys, time
from pathlib import Path
from runtime_agent.oci.runc import Runc
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
root, bundle, cid, sig = sys.argv[1:5]
runc = Runc(Path(root))
null = os.open(os.devnull, os.O_WRONLY)
out = Path(bundle) / "stdout"
out_fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
pid = runc.create(cid, Path(bundle), stdout_fd=out_fd, stderr_fd=null,
                  pid_file=Path(bundle) / "pid")
runc.start(cid)
if sig:
    while b"ready" not in out.read_bytes():  # the shell has installed its trap
        time.sleep(0.01)
    runc.kill(cid, sig)
_, status = os.waitpid(pid, 0)
print(json.dumps(os.waitstatus_to_exitcode(status)))
"""


def exit_code_through_pid(harness: Harness, args: list[str], sig: str = "") -> int:
    cid, bundle, _ = harness.prepare(args)
    proc = subprocess.run(
        [sys.executable, "-c", SUBREAPER, str(harness.runc.root), str(bundle), cid, sig],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return int(json.loads(proc.stdout))


def test_it_runs_a_container_that_writes_straight_to_the_given_files(harness):
    started = harness.run(["sh", "-c", "echo to-out; echo to-err >&2"])
    harness.wait_status(started.cid, "stopped")
    assert started.output() == "to-out\n"
    assert started.stderr.read_text() == "to-err\n"


def test_it_leaves_no_process_of_its_own_behind_a_running_container(harness):
    started = harness.run(["sleep", "100"])
    state = harness.wait_status(started.cid, "running")
    assert state["pid"] == started.pid
    # The container's init is an orphan adopted by init (or a subreaper),
    # not a child of a shim or of runc.
    ppid = int(Path(f"/proc/{started.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid != os.getpid()
    assert "runc" not in Path(f"/proc/{ppid}/comm").read_text()


def test_it_reports_the_main_process_exit_code_to_a_subreaper(harness):
    assert exit_code_through_pid(harness, ["sh", "-c", "exit 3"]) == 3


def test_it_delivers_a_signal_by_name_to_the_main_process(harness):
    trap = 'trap "exit 7" TERM; echo ready; while :; do sleep 0.05; done'
    assert exit_code_through_pid(harness, ["sh", "-c", trap], sig="TERM") == 7


def test_it_kills_with_a_signal_number(harness):
    started = harness.run(["sleep", "100"])
    harness.wait_status(started.cid, "running")
    assert harness.runc.kill(started.cid, 9) is True
    harness.wait_status(started.cid, "stopped")


def test_it_kills_every_process_with_all(harness):
    started = harness.run(["sh", "-c", "sleep 100 & sleep 100 & wait"])
    harness.wait_status(started.cid, "running")
    assert harness.runc.kill(started.cid, "KILL", all=True) is True
    harness.wait_status(started.cid, "stopped")


def test_it_says_false_when_killing_a_stopped_container(harness):
    started = harness.run(["true"])
    harness.wait_status(started.cid, "stopped")
    assert harness.runc.kill(started.cid, "KILL") is False


def test_it_starts_only_on_start(harness):
    started = harness.create(["sh", "-c", "echo started"])
    assert harness.runc.state(started.cid)["status"] == "created"
    # Its init is still runc's, waiting for the start: the command has not run.
    assert Path(f"/proc/{started.pid}/comm").read_text().startswith("runc:")
    assert started.output() == ""
    harness.runc.start(started.cid)
    harness.wait_status(started.cid, "stopped")
    assert started.output() == "started\n"


def test_it_lists_and_deletes_containers(harness):
    started = harness.run(["sleep", "100"])
    assert started.cid in {c["id"] for c in harness.runc.list()}
    harness.runc.delete(started.cid, force=True)
    assert harness.runc.state(started.cid) is None
    assert started.cid not in {c["id"] for c in harness.runc.list()}
    assert not Path(f"/proc/{started.pid}").exists() or _is_zombie(started.pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_it_knows_nothing_of_an_unknown_container(harness):
    cid = new_id()
    assert harness.runc.state(cid) is None
    with pytest.raises(NotFound):
        harness.runc.delete(cid)
    harness.runc.delete(cid, force=True)  # idempotent
    with pytest.raises(NotFound):
        harness.runc.start(cid)


def test_it_lists_nothing_in_a_fresh_root(tmp_path):
    assert Runc(tmp_path / "empty-root").list() == []


def test_it_puts_runcs_own_error_into_the_failure(harness):
    with pytest.raises(CommandFailed) as err:
        harness.create(["/no/such/program"])
    assert "/no/such/program" in err.value.message
    assert "no such file" in err.value.message.lower()
    assert err.value.permanent  # creating it again cannot help


def test_it_refuses_a_second_container_with_the_same_id(harness):
    started = harness.create(["sleep", "100"])
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        with pytest.raises(Conflict):
            harness.runc.create(
                started.cid, started.bundle, stdout_fd=null, stderr_fd=null,
                pid_file=started.bundle / "pid2",
            )  # fmt: skip
    finally:
        os.close(null)


def run_detached(harness: Harness, args: list[str]) -> tuple[str, Path, int]:
    cid, bundle, _ = harness.prepare(args)
    out = os.open(bundle / "stdout", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        pid = harness.runc.run_detached(
            cid, bundle, stdout_fd=out, stderr_fd=out, pid_file=bundle / "pid"
        )
    finally:
        os.close(out)
    return cid, bundle, pid


def test_run_detached_creates_and_starts_in_one_call(harness):
    cid, bundle, pid = run_detached(harness, ["sh", "-c", "echo started; sleep 100"])
    state = harness.runc.state(cid)
    assert (state["status"], state["pid"]) == ("running", pid)
    wait_until(lambda: (bundle / "stdout").read_text() == "started\n", timeout_s=5)


def test_a_failed_run_detached_says_why_and_leaves_no_container(harness):
    with pytest.raises(CommandFailed) as err:
        run_detached(harness, ["/no/such/program"])
    assert "/no/such/program" in err.value.message
    assert err.value.permanent
    assert harness.runc.list() == []


# --- exec ----------------------------------------------------------------------


def test_it_execs_with_output_and_exit_code(harness):
    started = harness.run(["sleep", "100"])
    code, out, err = harness.exec(started.cid, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (code, out, err) == (5, "out\n", "err\n")


def test_it_execs_with_env_and_working_dir(harness):
    started = harness.run(["sleep", "100"])
    code, out, _ = harness.exec(
        started.cid, ["sh", "-c", 'echo "$GREETING $(pwd)"'], env={"GREETING": "hi"}, cwd="/tmp"
    )
    assert (code, out) == (0, "hi /tmp\n")


def test_it_execs_as_the_containers_user(harness):
    started = harness.run(["sleep", "100"], user="app")
    code, out, _ = harness.exec(started.cid, ["id"])
    assert code == 0
    assert out.startswith("uid=1000(app) gid=1000(app) groups=")
    assert "50(staff)" in out


def test_it_streams_exec_output_before_the_command_ends(harness):
    started = harness.run(["sleep", "100"])
    proc = harness.runc.exec(started.cid, ["sh", "-c", "echo first; sleep 5; echo second"])
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"first\n"
        assert proc.poll() is None  # the command is still running: streamed, not buffered
    finally:
        proc.kill()
        proc.wait()


def test_it_stops_a_runaway_exec(harness, tmp_path):
    started = harness.run(["sleep", "100"])
    pid_file = tmp_path / "exec.pid"
    proc = harness.runc.exec(started.cid, ["sleep", "100"], pid_file=pid_file)
    wait_until(pid_file.exists, timeout_s=5, what="the exec's pid file")
    assert stop_exec(proc, pid_file) == 137  # 128 + SIGKILL, not the end of sleep 100
    code, out, _ = harness.exec(started.cid, ["ps"])
    assert "sleep 100" in out and out.count("sleep 100") == 1  # only the main process


def test_it_fails_an_exec_into_a_stopped_container(harness):
    started = harness.run(["true"])
    harness.wait_status(started.cid, "stopped")
    code, _, err = harness.exec(started.cid, ["true"])
    assert code != 0
    assert "stopped" in err or "not running" in err


# --- CVE-2024-21626 -------------------------------------------------------------


def test_it_refuses_a_working_dir_on_a_leaked_fd(harness):
    for fd in range(3, 10):
        with pytest.raises(CommandFailed):
            harness.create(["true"], cwd=f"/proc/self/fd/{fd}")


COUNTING_RUNC = """#!/bin/sh
# The real runc, with every invocation noted in a file beside this script.
echo "$*" >> "$(dirname "$0")/calls"
exec runc "$@"
"""


def test_it_finds_this_runc_safe_and_remembers_it(tmp_path, harness):
    check_runtime_safe(harness.runc, tmp_path)
    verdict = json.loads((tmp_path / runc_mod.VERDICT_FILE).read_text())
    assert verdict["safe"].startswith(os.path.realpath("/usr/sbin/runc"))
    assert (tmp_path / runc_mod.VERDICT_FILE).stat().st_mode & 0o777 == 0o600
    assert harness.runc.list() == []  # the probe containers are gone


def test_a_remembered_verdict_costs_no_runc_call(tmp_path):
    wrapper = tmp_path / "bin" / "counting-runc"
    wrapper.parent.mkdir()
    wrapper.write_text(COUNTING_RUNC)
    wrapper.chmod(0o755)
    calls = wrapper.parent / "calls"
    runc = Runc(tmp_path / "root", binary=str(wrapper))
    check_runtime_safe(runc, tmp_path)
    probed = calls.read_text().splitlines()
    assert len(probed) > len(runc_mod._PROBE_FDS)  # the probe ran runc for every fd
    check_runtime_safe(runc, tmp_path)
    check_runtime_safe(Runc(tmp_path / "root", binary=str(wrapper)), tmp_path)
    assert calls.read_text().splitlines() == probed  # and never again


FAKE_VULNERABLE_RUNC = """#!/bin/sh
# Stands in for a runc without the CVE-2024-21626 fix: it lets any working
# dir through (here by rewriting it to / before the real runc sees it).
prev=""
for arg in "$@"; do
    if [ "$prev" = "--bundle" ]; then
        sed -i 's#"cwd": "/proc/self/fd/[0-9]*"#"cwd": "/"#' "$arg/config.json"
    fi
    prev="$arg"
done
exec runc "$@"
"""


def test_it_refuses_a_runc_that_accepts_a_leaked_fd_working_dir(tmp_path):
    check_runtime_safe(Runc(tmp_path / "root"), tmp_path)  # the real one: cached as safe
    fake = tmp_path / "vulnerable-runc"
    fake.write_text(FAKE_VULNERABLE_RUNC)
    fake.chmod(0o755)
    runc = Runc(tmp_path / "root", binary=str(fake))
    # The cached verdict belongs to the other binary and does not excuse this one.
    with pytest.raises(UnsafeRuntime, match="CVE-2024-21626"):
        check_runtime_safe(runc, tmp_path)
    assert "vulnerable-runc" not in (tmp_path / runc_mod.VERDICT_FILE).read_text()
    assert runc.list() == []
