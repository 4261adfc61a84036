"""Runs nginx on the router stand-in's config for tests (replaced by the
router helper's tests/support/router.py when it lands)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from runtime_agent.host.cmd import run


@contextlib.contextmanager
def run_router_standin(root: Path, port: int) -> Iterator[dict[str, str]]:
    """nginx with no app on ``port``; yields the env the worker needs."""
    from django.test import override_settings

    from paas.router.services import router_apply

    env = {"PAAS_ROUTER_DIR": str(root), "PAAS_ROUTER_PORT": str(port)}
    with override_settings(PAAS_ROUTER_DIR=root, PAAS_ROUTER_PORT=port):
        router_apply(routes=[])
    run(["nginx", "-p", str(root), "-c", str(root / "nginx.conf")])
    pid_file = root / "nginx.pid"
    try:
        yield env
    finally:
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        if text.isdigit():
            pid = int(text)
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
