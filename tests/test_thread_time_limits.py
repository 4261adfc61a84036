"""Task time limits on the threads pool (paas/core/thread_time_limits.py):
Celery enforces them only in prefork, and scripts/up's worker runs threads.
A real worker (``--pool threads``) on a real Redis runs a task that loops:
past the soft limit it gets SoftTimeLimitExceeded and the worker goes on
with the next task; a task that ignores it makes the worker exit past the
hard limit, as prefork would kill its child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import start_process, stop_process, wait_until
from tests.support.redis_server import run_redis

ROOT = Path(__file__).resolve().parents[1]


def _worker(redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "celery", "-A", "tests.support.time_limit_app", "worker",
            "--pool", "threads", "--concurrency", "2", "--loglevel", "INFO"]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url, "PAAS_DATA_DIR": str(log.parent)}
    with open(log, "wb") as out:
        return start_process(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _send(redis_url: str, marker: Path, *, ignore_soft: bool) -> None:
    code = (
        "import sys; from tests.support.time_limit_app import spin;"
        f"spin.delay({str(marker)!r}, {ignore_soft!r})"
    )
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url, "PAAS_DATA_DIR": str(marker.parent)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def _wait_soft_limit(marker: Path, log: Path, failures: int) -> None:
    def stopped() -> bool:
        return marker.exists() and marker.read_text() == "soft limit"

    def logged() -> bool:
        return log.read_text().count("SoftTimeLimitExceeded") >= failures

    wait_until(stopped, timeout_s=60, what=f"{marker.name} stopped by its soft limit")
    wait_until(logged, timeout_s=30, what=f"{marker.name}'s failure in the worker's log")


def test_past_the_soft_limit_the_task_fails_and_the_worker_goes_on(tmp_path):
    with run_redis(tmp_path / "redis") as redis_url:
        log = tmp_path / "worker.log"
        worker = _worker(redis_url, log)
        try:
            for n in (1, 2):  # the second: the thread that ran the first is fine
                _send(redis_url, tmp_path / f"task-{n}", ignore_soft=False)
                _wait_soft_limit(tmp_path / f"task-{n}", log, n)
            assert worker.poll() is None, log.read_text()
        finally:
            stop_process(worker)


def test_past_the_hard_limit_the_worker_exits(tmp_path):
    with run_redis(tmp_path / "redis") as redis_url:
        log = tmp_path / "worker.log"
        worker = _worker(redis_url, log)
        try:
            _send(redis_url, tmp_path / "task", ignore_soft=True)
            assert worker.wait(timeout=120) == 70, log.read_text()
        finally:
            stop_process(worker)
    assert "Hard time limit exceeded for limits.spin" in log.read_text()
