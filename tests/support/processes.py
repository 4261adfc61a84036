"""Helper processes, ports and waits for tests: the one place that starts
a process so it dies with pytest, stops it by PID (SIGTERM, then SIGKILL),
finds a free port and waits for a condition instead of for time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from runtime_agent.host.libc import libc

T = TypeVar("T")
PR_SET_PDEATHSIG = 1
POLL_S = 0.02


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout_s: float = 30.0,
    what: str = "the condition",
    poll_s: float = POLL_S,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that
    (a longer ``poll_s`` for a predicate that costs a request or a query)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s}s (last: {result!r})")
        time.sleep(poll_s)


async def async_wait_until(
    predicate: Callable[[], Any], *, timeout_s: float = 30.0, what: str = "the condition"
) -> Any:
    """:func:`wait_until` for the event loop; ``predicate`` may be async."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s}s (last: {result!r})")
        await asyncio.sleep(POLL_S)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (``0.0.0.0``: free on every address)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout_s: float = 30.0,
    proc: subprocess.Popen[Any] | None = None,
) -> None:
    """Until something accepts connections on ``host:port``; fails at once
    if ``proc`` (the process that should listen there) exits."""

    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        return port_open(host, port)

    wait_until(up, timeout_s=timeout_s, what=f"a listener on {host}:{port}")


def die_with_parent() -> None:
    """``preexec_fn``: a SIGKILLed pytest must not leave the child behind."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_process(argv: list[str], **popen: Any) -> subprocess.Popen[Any]:
    """Popen that dies with this process (PR_SET_PDEATHSIG)."""
    return subprocess.Popen(argv, preexec_fn=die_with_parent, **popen)


def stop_process(proc: subprocess.Popen[Any], *, grace_s: float = 10.0) -> int:
    """SIGTERM by PID, then SIGKILL after ``grace_s``; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=grace_s)
