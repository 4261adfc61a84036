"""daphne serving the platform, as in production (scripts/up's web line runs
the same ASGI application), as a process of the test's own on loopback."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port, start_process, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Daphne:
    """A running daphne: where it listens, its output, its process."""

    port: int
    log: Path
    pid: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_daphne(env: dict[str, str], tmp: Path, port: int | None = None) -> Iterator[Daphne]:
    """daphne serving the platform on a free loopback port (or ``port``: a
    restart is a second block on the same), on the test's database (``env``
    is the workers' environment)."""
    port = port or free_port()
    log_path = tmp / f"daphne-{port}.log"
    with open(log_path, "ab") as log:
        proc = start_process(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "paas.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout_s=90, proc=proc)
        yield Daphne(port, log_path, proc.pid)
    finally:
        stop_process(proc)
