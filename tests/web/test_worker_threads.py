"""The worker as scripts/up's Procfile runs it (``--pool threads
--concurrency 3``: one process, three tasks at a time, at most two of them
builds, see paas/builds/slots.py) runs two builds at once, each in its own
runc step, and cancelling both stops both and leaves no step container
behind (real worker, real runc)."""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from paas.applications.services import app_create
from paas.builds.models import BuildState
from paas.builds.services import build_cancel
from tests.web.deploy_support import wait_for
from tests.web.test_build_cancel import log_of, upload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def _procfile_pool() -> tuple[str, ...]:
    """The worker line's pool options, as scripts/up runs it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            argv = shlex.split(line.split(":", 1)[1])
            at = argv.index("--pool")
            return tuple(argv[at : at + 4])
    raise AssertionError("no worker line in the Procfile")


def _steps_running(build_env: dict[str, str]) -> list[Any]:
    runc = ["runc", "--root", str(Path(build_env["PAAS_BUILD_DIR"]) / "runc"), "list",
            "--format", "json"]  # fmt: skip
    return json.loads(subprocess.run(runc, capture_output=True, check=True).stdout or "[]") or []


def _wait_log(build: Any, line: str, timeout_s: float) -> None:
    def logged() -> bool:
        return line in log_of(build)

    try:
        wait_for(logged, timeout_s, f"{line.strip()!r} in build {build.pk}'s log")
    except TimeoutError as exc:
        raise AssertionError("\n".join([str(exc), *log_of(build)])) from None


def test_two_builds_run_at_once_and_both_cancel_cleanly(client, alice, workers, build_env):
    pool = _procfile_pool()
    assert pool == ("--pool", "threads", "--concurrency", "3")
    workers.start(pool)
    # A step of this run's own: no earlier build's cached layer answers for it.
    # It prints "step-42" (its command line, also logged, does not).
    token = secrets.token_hex(8)
    slow = f'FROM stack\nRUN true {token} && echo "step-$((40 + 2))" && sleep 600\nCMD ["true"]\n'
    builds = []
    for name in ("one", "two"):
        app_create(user=alice, team=alice.personal_team, name=name)
        builds.append(upload(client, alice, name, {"Dockerfile": slow.encode()}))
    for build in builds:  # both steps started: neither waits for the other
        _wait_log(build, "       step-42", 240)
    assert len(_steps_running(build_env)) == 2

    for build in builds:
        assert build_cancel(build=build)
    for build in builds:
        _wait_log(build, "-----> Build cancelled", 60)
        build.refresh_from_db()
        assert build.state == BuildState.CANCELLED
    assert _steps_running(build_env) == []
