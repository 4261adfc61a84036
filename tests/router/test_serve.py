"""``manage.py router_serve`` (the Procfile's router line) becomes nginx on
the live routes, rendered again with today's settings."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

from django.test import override_settings

from paas.router.routes import Route
from paas.router.services import router_apply, router_status
from tests.support.processes import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _get(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_router_serve_runs_nginx_on_the_live_routes(tmp_path: Path) -> None:
    directory = tmp_path / "router"
    port, https_port = free_port(), free_port()
    env = {
        "PAAS_ROUTER_DIR": str(directory),
        "PAAS_ROUTER_PORT": str(port),
        "PAAS_ROUTER_HTTPS_PORT": str(https_port),
        "PAAS_ROUTER_WORKERS": "1",
    }
    overrides = {
        "PAAS_ROUTER_DIR": directory,
        "PAAS_ROUTER_PORT": port,
        "PAAS_ROUTER_HTTPS_PORT": https_port,
        "PAAS_ROUTER_WORKERS": 1,
    }
    with override_settings(**overrides):
        router_apply(routes=[Route("sleepy", ("sleepy.localhost",), ())])  # nginx not running yet
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "router_serve"],
            cwd=ROOT, env={**os.environ, **env, "PAAS_DATA_DIR": str(tmp_path)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:

            def running() -> bool:
                assert proc.poll() is None, "router_serve exited"
                return router_status().running

            wait_until(running, timeout_s=30, what="nginx running")
            assert router_status().pid == proc.pid  # the command became nginx
            assert _get(port, "sleepy.localhost") == 503
            assert _get(port, "other.localhost") == 404
        finally:
            stop_process(proc, grace_s=15)
