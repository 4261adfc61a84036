"""``python -m paas.web --singletons SCHEDULE`` (scripts/up's ``web`` line):
daphne serving the platform, with Celery beat and the log follower on a
thread of their own in the same process. The web answers while beat sends
its tasks and the follower runs; SIGTERM stops all three with exit code 0
and beat's schedule saved; when beat cannot run, the web stops too and the
process exits non-zero (so scripts/up's supervisor starts it again)."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port, start_process, stop_process, wait_until
from tests.support.redis_server import run_redis
from tests.web.conftest import ROOT
from tests.web.singletons_support import assert_both_run_then_sigterm_stops, singletons_env

pytestmark = pytest.mark.django_db(transaction=True)


def _start(
    tmp_path: Path, redis_url: str, schedule: Path
) -> tuple[subprocess.Popen[bytes], Path, int]:
    env = singletons_env(tmp_path, redis_url)
    port = free_port()
    argv = [sys.executable, "-m", "paas.web", "--singletons", str(schedule),
            "-b", "127.0.0.1", "-p", str(port), "paas.asgi:application"]  # fmt: skip
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        proc = start_process(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log, port


def _status(port: int, path: str) -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return 0


def test_it_serves_while_beat_and_the_follower_run_and_sigterm_stops_all(tmp_path):
    with run_redis(tmp_path / "redis") as redis_url:
        schedule = tmp_path / "beat-schedule"
        proc, log, port = _start(tmp_path, redis_url, schedule)
        try:
            wait_until(
                lambda: proc.poll() is None and _status(port, "/login/") == 200,
                timeout_s=90,
                what="the web answering /login/",
                poll_s=0.2,
            )
            assert_both_run_then_sigterm_stops(proc, log, redis_url)
        finally:
            stop_process(proc)
    assert list(tmp_path.glob("beat-schedule*")), "beat saved no schedule"


def test_when_beat_cannot_run_the_web_stops_too_and_it_exits_non_zero(tmp_path):
    with run_redis(tmp_path / "redis") as redis_url:
        # A schedule file beat cannot open: its thread ends at once.
        proc, log, _ = _start(tmp_path, redis_url, tmp_path / "missing" / "beat-schedule")
        try:
            assert proc.wait(timeout=90) != 0
        finally:
            stop_process(proc)
    output = log.read_text()
    assert "beat stopped on an error" in output
    assert "stopping the web" in output
