"""``manage.py singletons`` (scripts/up's ``singletons`` line): Celery beat
and the log follower in one process. Beat sends its schedule's tasks by name
(the worker runs them), SIGTERM stops both with exit code 0 and beat's
schedule saved, and when one part stops on its own the whole command exits
non-zero (so scripts/up's supervisor starts it again)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.processes import start_process, stop_process
from tests.support.redis_server import run_redis
from tests.web.conftest import ROOT
from tests.web.singletons_support import assert_both_run_then_sigterm_stops, singletons_env

pytestmark = pytest.mark.django_db(transaction=True)


def _start(tmp_path: Path, redis_url: str, schedule: Path):
    env = singletons_env(tmp_path, redis_url)
    argv = [sys.executable, "manage.py", "singletons", "--schedule", str(schedule)]
    log = tmp_path / "singletons.log"
    with open(log, "wb") as out:
        return start_process(argv, cwd=ROOT, env=env, stdout=out, stderr=out), log


def test_beat_sends_its_tasks_and_sigterm_stops_both_with_the_schedule_saved(tmp_path):
    with run_redis(tmp_path / "redis") as redis_url:
        schedule = tmp_path / "beat-schedule"
        proc, log = _start(tmp_path, redis_url, schedule)
        try:
            assert_both_run_then_sigterm_stops(proc, log, redis_url)
        finally:
            stop_process(proc)
    assert list(tmp_path.glob("beat-schedule*")), "beat saved no schedule"


def test_when_beat_cannot_run_the_follower_stops_too_and_it_exits_non_zero(tmp_path):
    with run_redis(tmp_path / "redis") as redis_url:
        # A schedule file beat cannot open: its thread ends at once.
        proc, log = _start(tmp_path, redis_url, tmp_path / "missing" / "beat-schedule")
        try:
            assert proc.wait(timeout=60) != 0
        finally:
            stop_process(proc)
    output = log.read_text()
    assert "beat stopped on an error" in output
    assert "beat or the log follower stopped on its own" in output
