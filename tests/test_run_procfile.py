"""scripts/run_procfile.py, the supervisor scripts/up runs the Procfile
under: every line runs with the env file's variables, its output comes out
prefixed with its name, no shell stays between it and its command, and when
one stops (or on SIGTERM) every other is stopped, SIGKILL after the wait."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

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


def test_when_one_stops_the_others_are_stopped_and_its_code_is_returned(tmp_path):
    proc = _start(tmp_path, "server: sleep 60\nbroken: sh -c 'sleep 0.5; exit 3'\n")
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
    proc = _start(tmp_path, stubborn + "quits: sh -c 'sleep 1; exit 0'\n", "", "--stop-wait", "1")
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
    proc = _start(tmp_path, "chatty: sh -c 'head -c 307200 /dev/zero | tr \\\\0 x'\n")
    output, _ = proc.communicate(timeout=30)
    pieces = re.findall(r"^\S+ chatty\.1 +\| (.*)$", output, re.M)
    assert len(pieces) >= 4, output[:300]
    assert all(len(p) <= 64 * 1024 for p in pieces)
    assert sum(len(p) for p in pieces) == 307200
