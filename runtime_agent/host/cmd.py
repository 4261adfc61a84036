"""The one wrapper every external command goes through (runc, mount, nft,
debootstrap, git...): it takes an argv list (never a shell string), logs the
command, and on failure raises :class:`CommandFailed` with the exit code or
signal and stderr."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from runtime_agent.host.errors import CommandFailed

log = logging.getLogger("runtime_agent.cmd")


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    stdin: int | IO[Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    stderr: int | IO[Any] | None = subprocess.PIPE,
    pass_fds: Sequence[int] = (),
    permanent: bool = False,
    failure_expected: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` and return the completed process.

    ``failure_expected`` logs a failure at debug level: for probes whose
    refusal is the good outcome, so the log keeps warnings for real trouble.

    ``stdin`` (exclusive with ``input``) lets a detached child, such as a
    container started by ``runc create``, get /dev/null instead of our stdin.
    ``permanent`` marks failures that retrying cannot fix (bad input rather
    than a busy host); it travels with the raised error.
    """
    args = [str(a) for a in argv]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            args,
            input=input,
            stdin=stdin,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            stdout=stdout,
            stderr=stderr,
            pass_fds=tuple(pass_fds),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        log.warning("command timed out after %ss: %s", timeout, args)
        raise CommandFailed(args, -1, f"timed out after {timeout}s", permanent=permanent) from exc
    except FileNotFoundError as exc:
        raise CommandFailed(args, 127, f"{args[0]}: not found", permanent=True) from exc
    elapsed = (time.monotonic() - started) * 1000
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else ""
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        level = logging.DEBUG if failure_expected else logging.WARNING
        log.log(level, "command failed (%s, %.0f ms): %s: %s", how, elapsed, args, err.strip())
        if check:
            raise CommandFailed(args, proc.returncode, err, permanent=permanent)
    else:
        log.debug("command ok (%.0f ms): %s", elapsed, args)
    return proc


def output(argv: Sequence[str], **kwargs: Any) -> str:
    """Run ``argv`` and return its stdout as text."""
    return run(argv, **kwargs).stdout.decode()


def popen(
    argv: Sequence[str],
    *,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    stderr: int | IO[Any] | None = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` for a caller that streams its output (``runc exec``).

    The caller owns the process: it reads the pipes, waits and turns a bad
    exit code into an error; we only log the start.
    """
    args = [str(a) for a in argv]
    log.debug("command started: %s", args)
    try:
        return subprocess.Popen(
            args,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as exc:
        raise CommandFailed(args, 127, f"{args[0]}: not found", permanent=True) from exc
