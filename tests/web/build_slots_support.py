"""Helpers of the tests that run builds on the worker as scripts/up's
Procfile runs it (tests/web/test_worker_threads.py,
test_control_under_builds.py): slow builds that hold a build slot until
cancelled, and what shows they run."""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from paas.applications.services import app_create
from paas.builds.services import build_cancel
from tests.web.deploy_support import wait_for
from tests.web.test_build_cancel import log_of, upload

ROOT = Path(__file__).resolve().parents[2]
# What the slow step prints once it runs (its command line, also logged, does not).
STEP_STARTED = "       step-42"
CANCELLED = "-----> Build cancelled"


def procfile_pool() -> tuple[str, ...]:
    """The worker line's pool options, as scripts/up runs it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            argv = shlex.split(line.split(":", 1)[1])
            at = argv.index("--pool")
            return tuple(argv[at : at + 4])
    raise AssertionError("no worker line in the Procfile")


def steps_running(build_env: dict[str, str]) -> list[Any]:
    """The build step containers runc runs now."""
    runc = ["runc", "--root", str(Path(build_env["PAAS_BUILD_DIR"]) / "runc"), "list",
            "--format", "json"]  # fmt: skip
    return json.loads(subprocess.run(runc, capture_output=True, check=True).stdout or "[]") or []


def wait_log(build: Any, line: str, timeout_s: float) -> None:
    def logged() -> bool:
        return line in log_of(build)

    try:
        wait_for(logged, timeout_s, f"{line.strip()!r} in build {build.pk}'s log")
    except TimeoutError as exc:
        raise AssertionError("\n".join([str(exc), *log_of(build)])) from None


def slow_dockerfile() -> bytes:
    """A step of this call's own (no earlier build's cached layer answers for
    it) that prints STEP_STARTED, then holds its build slot for ten minutes."""
    token = secrets.token_hex(8)
    step = f'RUN true {token} && echo "step-$((40 + 2))" && sleep 600'
    return f'FROM stack\n{step}\nCMD ["true"]\n'.encode()


def quick_dockerfile() -> bytes:
    """A step of this call's own that ends at once."""
    return f'FROM stack\nRUN true {secrets.token_hex(8)}-quick\nCMD ["true"]\n'.encode()


def upload_builds(client: Any, user: Any, names: Sequence[str], dockerfile: bytes) -> list[Any]:
    """A new app of each name in the user's team, and a build of the Dockerfile
    uploaded to each."""
    builds = []
    for name in names:
        app_create(user=user, team=user.personal_team, name=name)
        builds.append(upload(client, user, name, {"Dockerfile": dockerfile}))
    return builds


@contextmanager
def cancelled_at_end(builds: Sequence[Any]) -> Iterator[None]:
    """Cancels every build on the way out and waits for each one that
    started to end its step."""
    try:
        yield
    finally:
        for build in builds:
            build_cancel(build=build)
        for build in builds:
            build.refresh_from_db()
            if build.started_at is not None:
                wait_log(build, CANCELLED, 60)


@contextmanager
def two_slow_builds_running(client: Any, user: Any) -> Iterator[list[Any]]:
    """Two slow builds (apps "one" and "two") whose steps both run, holding
    the two build slots of the worker (already started) until the block ends;
    then both are cancelled."""
    builds = upload_builds(client, user, ("one", "two"), slow_dockerfile())
    with cancelled_at_end(builds):
        for build in builds:
            wait_log(build, STEP_STARTED, 240)
        yield builds
