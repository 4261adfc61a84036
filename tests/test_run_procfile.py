"""scripts/run_procfile.py, the supervisor scripts/up runs the Procfile
under: every line runs with the env file's variables, its output comes out
prefixed with its name, no shell stays between it and its command, a line
that dies is started again (backoff, crash-loop limit) while the others run
on, and on SIGTERM (or, with --restart no, when one stops) every line is
stopped, SIGKILL after the wait. Backoffs are made tiny by flags: the tests
wait on what the supervisor prints, never on time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.processes import wait_until

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_procfile.py"


def _start(tmp_path: Path, procfile: str, env_file: str = "", *extra: str) -> subprocess.Popen:
    (tmp_path / "Procfile").write_text(procfile)
    (tmp_path / "env").write_text(env_file)
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(SCRIPT), "-e", "env", "-f", "Procfile", *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _started(output: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"(\S+) started \(pid=(\d+)\)", output)}


def test_it_runs_every_line_with_the_env_file_and_prefixes_its_output(tmp_path):
    procfile = (
        "one: sh -c 'echo one says $GREETING; exec sleep 60'\n"
        "two: sh -c 'echo two; exec sleep 60'\n"
    )
    proc = _start(tmp_path, procfile, "GREETING='hi'\n")
    assert proc.stdout is not None
    seen = ""
    while not ("one says" in seen and "two.1 " in seen.replace("two.1 started", "")):
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    output = seen + proc.communicate(timeout=30)[0]
    assert re.search(r"^\d\d:\d\d:\d\d one\.1 +\| one says hi$", output, re.M), output
    assert re.search(r"^\d\d:\d\d:\d\d two\.1 +\| two$", output, re.M), output
    assert proc.returncode == 143, output


def test_with_restart_no_when_one_stops_the_others_are_stopped_and_its_code_is_returned(
    tmp_path,
):
    procfile = "server: sleep 60\nbroken: sh -c 'sleep 0.5; exit 3'\n"
    proc = _start(tmp_path, procfile, "", "--restart", "no")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, output
    assert "broken.1 stopped (rc=3)" in output
    assert not _alive(_started(output)["server.1"])


def test_no_shell_stays_between_it_and_a_simple_command(tmp_path):
    proc = _start(tmp_path, "server: sleep 60\n")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    pid = _started(line)["server.1"]
    wait_until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0060\x00")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143  # like a shell's 128 + SIGTERM
    assert not _alive(pid)


def test_what_ignores_sigterm_is_killed_after_the_wait_with_its_children(tmp_path):
    stubborn = "stubborn: sh -c 'trap \"\" TERM; sleep 60 & echo child $!; wait'\n"
    proc = _start(
        tmp_path,
        stubborn + "quits: sh -c 'sleep 1; exit 0'\n",
        "",
        "--stop-wait",
        "1",
        "--restart",
        "no",
    )
    output, _ = proc.communicate(timeout=60)
    assert "SIGKILL" in output, output
    child = int(re.search(r"stubborn\.1 +\| child (\d+)", output)[1])  # type: ignore[index]
    wait_until(lambda: not _alive(child), what="the stubborn line's child to be gone")
    assert not _alive(_started(output)["stubborn.1"])


def test_a_malformed_procfile_is_refused_with_its_line(tmp_path):
    proc = _start(tmp_path, "web: ok\nnot a process line\n")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "Procfile line 2" in output
    assert "started" not in output  # refused before anything ran


def test_output_without_newlines_is_printed_in_pieces_not_held(tmp_path):
    # 300 KiB and no newline: held whole, it would grow without bound.
    chatty = "chatty: sh -c 'head -c 307200 /dev/zero | tr \\\\0 x'\n"
    proc = _start(tmp_path, chatty, "", "--restart", "no")
    output, _ = proc.communicate(timeout=30)
    pieces = re.findall(r"^\S+ chatty\.1 +\| (.*)$", output, re.M)
    assert len(pieces) >= 4, output[:300]
    assert all(len(p) <= 64 * 1024 for p in pieces)
    assert sum(len(p) for p in pieces) == 307200


class Output:
    """What a running supervisor printed so far, read on a thread, so a test
    waits for a line without blocking on the pipe."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                self.text += line

    def wait_for(self, pattern: str) -> re.Match[str]:
        return wait_until(
            lambda: re.search(pattern, self.now(), re.M), timeout_s=60, what=repr(pattern)
        )

    def now(self) -> str:
        with self._lock:
            return self.text

    def finish(self, proc: subprocess.Popen) -> str:
        proc.wait(timeout=60)
        self._thread.join(timeout=30)
        return self.now()


def _starts(output: str, name: str) -> list[int]:
    return [int(m[1]) for m in re.finditer(rf"{re.escape(name)} started \(pid=(\d+)\)", output)]


def test_a_killed_line_is_started_again_and_the_others_keep_running(tmp_path):
    procfile = "steady: sleep 600\nvictim: sh -c 'while :; do echo tick; sleep 0.05; done'\n"
    proc = _start(tmp_path, procfile, "", "--backoff", "0.01")
    out = Output(proc)
    try:
        steady = int(out.wait_for(r"steady\.1 started \(pid=(\d+)\)")[1])
        first = int(out.wait_for(r"victim\.1 started \(pid=(\d+)\)")[1])
        out.wait_for(r"victim\.1 +\| tick$")
        os.kill(first, signal.SIGKILL)
        out.wait_for(r"victim\.1 +\| exited with code 137; restarting in 0\.01 s$")
        second = wait_until(lambda: _starts(out.now(), "victim.1")[1:], what="a restart")[0]
        assert second != first
        restarted = rf"victim\.1 started \(pid={second}\)"
        out.wait_for(rf"{restarted}(.|\n)*victim\.1 +\| tick$")  # its output goes on
        assert not _alive(first)
        assert _alive(steady) and _starts(out.now(), "steady.1") == [steady]
    finally:
        proc.send_signal(signal.SIGTERM)
        output = out.finish(proc)
    assert proc.returncode == 143, output
    assert not _alive(steady) and not _alive(second)


def test_what_a_dead_line_left_in_its_group_is_stopped_before_it_starts_again(tmp_path):
    procfile = "nested: sh -c 'sleep 600 & echo child $!; wait'\n"
    proc = _start(tmp_path, procfile, "", "--backoff", "0.01", "--stop-wait", "1")
    out = Output(proc)
    try:
        child = int(out.wait_for(r"nested\.1 +\| child (\d+)$")[1])
        os.kill(_starts(out.now(), "nested.1")[0], signal.SIGKILL)
        wait_until(lambda: _starts(out.now(), "nested.1")[1:], what="a restart")
        assert not _alive(child)  # gone before the new one started
    finally:
        proc.send_signal(signal.SIGTERM)
        out.finish(proc)


def test_a_crash_loop_stops_everything_naming_the_line_with_its_code(tmp_path):
    procfile = "steady: sleep 600\nbroken: sh -c 'echo trying; exit 3'\n"
    extra = ["--backoff", "0.01", "--backoff-max", "0.02", "--restart-limit", "3"]
    proc = _start(tmp_path, procfile, "", *extra)
    out = Output(proc)
    output = out.finish(proc)
    assert proc.returncode == 3, output
    waits = re.findall(r"broken\.1 +\| exited with code 3; restarting in (\S+) s$", output, re.M)
    assert waits == ["0.01", "0.02", "0.02"], output  # doubled, capped
    assert len(_starts(output, "broken.1")) == 4
    assert "broken.1 exited with code 3 after 3 restarts in 300 s: crash loop" in output
    assert not _alive(_starts(output, "steady.1")[0])
    assert len(_starts(output, "steady.1")) == 1


def test_a_run_longer_than_stable_after_starts_the_backoff_over(tmp_path):
    procfile = "broken: sh -c 'exit 4'\n"
    extra = ["--backoff", "0.01", "--stable-after", "0", "--restart-limit", "2"]
    proc = _start(tmp_path, procfile, "", *extra)
    output = Output(proc).finish(proc)
    assert proc.returncode == 4, output
    waits = re.findall(r"restarting in (\S+) s$", output, re.M)
    assert waits == ["0.01", "0.01"], output


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_a_backoff_stops_everything_and_starts_nothing(tmp_path, sig, code):
    procfile = "steady: sleep 600\nbroken: sh -c 'exit 5'\n"
    proc = _start(tmp_path, procfile, "", "--backoff", "600", "--backoff-max", "600")
    out = Output(proc)
    out.wait_for(r"broken\.1 +\| exited with code 5; restarting in 600 s$")
    proc.send_signal(sig)
    output = out.finish(proc)
    assert proc.returncode == code, output
    assert len(_starts(output, "broken.1")) == 1, output
    assert not any(_alive(pid) for pid in _started(output).values())


def test_with_restart_on_failure_a_clean_exit_stops_everything(tmp_path):
    procfile = "steady: sleep 600\ndone: sh -c 'echo bye; exit 0'\n"
    proc = _start(tmp_path, procfile, "", "--restart", "on-failure")
    output = Output(proc).finish(proc)
    assert proc.returncode == 0, output
    assert "done.1 stopped (rc=0)" in output
    assert len(_starts(output, "done.1")) == 1
    assert not _alive(_starts(output, "steady.1")[0])


def test_flags_out_of_range_are_refused_before_anything_runs(tmp_path):
    for flags in (["--backoff", "5", "--backoff-max", "1"], ["--restart-limit", "-1"]):
        proc = _start(tmp_path, "server: sleep 60\n", "", *flags)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 2, output
        assert "started" not in output


def test_restarts_older_than_the_window_do_not_count_towards_a_crash_loop(tmp_path):
    # Each run (>= 0.05 s) is longer than the window: no restart is still in
    # it when the next exit comes.
    extra = ["--backoff", "0.01", "--restart-limit", "1", "--restart-window", "0.01"]
    proc = _start(tmp_path, "broken: sh -c 'sleep 0.05; exit 6'\n", "", *extra)
    out = Output(proc)
    try:
        wait_until(lambda: len(_starts(out.now(), "broken.1")) >= 4, what="3 restarts")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = out.finish(proc)
    assert proc.returncode == 143, output
    assert "crash loop" not in output
