"""What the tests of the two ways to run Celery beat and the log follower
(``manage.py singletons``; ``python -m paas.web --singletons``) share: their
environment, and what shows beat runs and that SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import redis

from paas.core.work_slots import CONTROL_QUEUE
from tests.support.processes import wait_until
from tests.web.conftest import _worker_env


def singletons_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """Beat sends deploy.observe every second; the follower reads a router
    access log of the test's own."""
    return {
        **_worker_env(redis_url),
        "PAAS_OBSERVE_SECONDS": "1",
        "PAAS_LOG_ROUTER_ACCESS_LOG": str(tmp_path / "access.log"),
    }


def queued_tasks(redis_url: str) -> list[str]:
    """What waits in the control queue, where the beat's loops go."""
    client = redis.Redis.from_url(redis_url)
    queued: list[bytes] = client.lrange(CONTROL_QUEUE, 0, -1)  # type: ignore[assignment]
    return [json.loads(raw)["headers"]["task"] for raw in queued]


def assert_both_run_then_sigterm_stops(
    proc: subprocess.Popen[bytes], log: Path, redis_url: str
) -> None:
    """Beat queues its deploy.observe, the follower said it follows, and
    SIGTERM ends the process with exit code 0."""
    wait_until(
        lambda: "deploy.observe" in queued_tasks(redis_url),
        timeout_s=60,
        what="beat's deploy.observe in the queue",
    )
    assert "following container logs and" in log.read_text(), log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
