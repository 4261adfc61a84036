"""Start a REAL redis-server for a test: a free loopback port, a tmp dir, no
persistence; stopped by its PID (never by name: other runs share the machine)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import free_port, start_process, stop_process, wait_until

START_TIMEOUT_S = 10.0


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def run_redis(tmp_dir: Path, port: int | None = None) -> Iterator[str]:
    """Yield ``redis://127.0.0.1:PORT/0`` of a redis-server that lives for the
    block (on ``port`` if given: a "restart" is a second block on the same)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_dir),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip
    with open(tmp_dir / "redis.log", "wb") as out:
        proc = start_process(argv, stdout=out, stderr=subprocess.STDOUT)
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((tmp_dir / "redis.log").read_text())
            return _answers(port)

        wait_until(answers, timeout_s=START_TIMEOUT_S, what=f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)
