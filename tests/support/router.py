"""Run the platform's REAL router (nginx) for a test, on free loopback ports.

    with run_router(tmp_path / "router") as router:
        router_apply(routes=[...])          # this process: settings overridden
        router.get("hello.localhost", "/")  # through nginx
        # a worker process gets router.env in its environment

The nginx master runs from ``router_prepare()``'s argv (what ``manage.py
router_serve`` execs), is waited for on its status socket and stopped by its
PID at the end. It dies with the test process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.test import override_settings

from paas.router.services import router_prepare, router_status
from tests.support.processes import die_with_parent, free_port, stop_process, wait_until

START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class TestRouter:
    __test__ = False

    directory: Path
    http_port: int
    https_port: int
    pid: int

    @property
    def env(self) -> dict[str, str]:
        """What another process (a Celery worker) needs to apply routes here."""
        return {
            "PAAS_ROUTER_DIR": str(self.directory),
            "PAAS_ROUTER_PORT": str(self.http_port),
            "PAAS_ROUTER_HTTPS_PORT": str(self.https_port),
            "PAAS_ROUTER_LISTEN": "127.0.0.1",
        }

    def get(self, host: str, path: str = "/", **headers: str) -> http.client.HTTPResponse:
        """One GET through the router with ``Host: host`` (body already read:
        ``.data``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host, **headers})
            response = conn.getresponse()
            response.data = response.read()  # type: ignore[attr-defined]
            return response
        finally:
            conn.close()

    def get_https(
        self, host: str, ca_file: Path, path: str = "/", *, host_header: str | None = None
    ) -> http.client.HTTPResponse:
        """One GET over TLS with SNI ``host`` (and Host ``host_header``, by
        default the same), trusting ``ca_file`` and checking the certificate
        names ``host``."""
        context = ssl.create_default_context(cafile=str(ca_file))
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=10)
        with context.wrap_socket(raw, server_hostname=host) as tls:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host_header or host}\r\nConnection: close\r\n\r\n"
            )
            tls.sendall(request.encode())
            response = http.client.HTTPResponse(tls)
            response.begin()
            response.data = response.read()  # type: ignore[attr-defined]
        return response

    def access_log(self) -> Path:
        return self.directory / "logs" / "access.log"

    def access_lines(self, *, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The access log's JSON lines once there are at least ``count``
        (nginx buffers the log and writes it within a fraction of a second)."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.access_log().read_text() if self.access_log().exists() else ""
            lines = [json.loads(line) for line in text.splitlines()]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@contextlib.contextmanager
def run_router(directory: Path, *, workers: int = 2) -> Iterator[TestRouter]:
    http_port, https_port = free_port(), free_port()
    with override_settings(
        PAAS_ROUTER_DIR=directory,
        PAAS_ROUTER_PORT=http_port,
        PAAS_ROUTER_HTTPS_PORT=https_port,
        PAAS_ROUTER_LISTEN=["127.0.0.1"],
        PAAS_ROUTER_WORKERS=workers,
    ):
        argv = router_prepare()
        out = open(directory / "logs" / "nginx.out", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
        out.close()
        try:

            def running() -> bool:
                if proc.poll() is not None:
                    log = (directory / "logs" / "error.log").read_text(errors="replace")
                    raise RuntimeError(f"the router's nginx did not start: {log[-2000:]}")
                return router_status().running

            wait_until(running, timeout_s=START_TIMEOUT_S, what="the router's nginx running")
            yield TestRouter(directory, http_port, https_port, proc.pid)
        finally:
            stop_process(proc, grace_s=15)  # SIGTERM: nginx's fast shutdown
