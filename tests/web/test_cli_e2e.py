"""The `paas` CLI end to end against a running platform: the live Django
server, a real Celery worker, a real agent, the registry and nginx:
login, create, deploy, logs (and logs -f), config:set, run, scale,
rollback, destroy. The CLI runs as its own process, as on a laptop
(PYTHONPATH=cli, no Django)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas.accounts.services import api_token_create
from paas.applications.models import App, Release, ReleaseState
from tests.support.agent_harness import AgentProcess
from tests.support.processes import stop_process
from tests.support.router import TestRouter
from tests.web.deploy_support import (
    SAMPLE,
    add_host,
    container_names,
    get,
    use_registry_settings,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
HOST = "hello.localhost"


class Cli:
    """Runs `paas ...` as a separate process logged in as one user."""

    def __init__(self, url: str, token: str, home: Path) -> None:
        self.url, self.token, self.home = url, token, home
        self.env = {  # no PAAS_URL/PAAS_TOKEN: `paas login` saves them under HOME
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "PYTHONPATH": str(REPO / "cli"),
            "PAAS_APP": "hello",
        }

    @property
    def saved(self) -> Path:
        return self.home / ".config" / "paas" / "credentials.json"

    def __call__(self, *args: str, cwd: Path | None = None, stdin: str = "",
                 ok: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "paas_cli", *args], env=self.env, cwd=cwd, input=stdin,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if ok:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def follow(self, *args: str) -> Follower:
        proc = subprocess.Popen(
            [sys.executable, "-m", "paas_cli", *args], env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return Follower(proc)


class Follower:
    """A `paas logs -f` running beside the test; its lines read by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for_line(self, text: str) -> bool:
        return bool(wait_for(lambda: any(text in line for line in self.lines), 60, text))

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def cli(
    live_server: Any, alice: Any, agent: AgentProcess, router: TestRouter, workers: Any,
    settings: Any, tmp_path: Path, build_env: dict[str, str],
) -> Iterator[Cli]:  # fmt: skip
    use_registry_settings(settings, build_env)  # `run` creates its container from here
    deploy_env = {**router.env, "PAAS_DRAIN_SECONDS": "0.5", "PAAS_HEALTH_TIMEOUT_S": "30"}
    settings.PAAS_HEALTH_TIMEOUT_S = 30.0
    workers.env.update(deploy_env)
    add_host(agent)
    workers.start()
    _, token = api_token_create(user=alice, name="laptop")
    cli = Cli(live_server.url, token, tmp_path)
    cli("login", "--url", cli.url, "--token", cli.token)
    yield cli
    for name in container_names(agent):
        agent.request("DELETE", f"/v1/containers/{name}?force=1")


def _source(tmp_path: Path) -> Path:
    src = shutil.copytree(SAMPLE, tmp_path / "hello")
    (src / ".gitignore").write_text("*.log\n")
    (src / "debug.log").write_text("never uploaded")
    return src


def test_create_deploy_scale_configure_roll_back_and_destroy(
    cli: Cli, tmp_path: Path, router: TestRouter, agent: AgentProcess
) -> None:
    port = router.http_port
    assert oct(cli.saved.stat().st_mode & 0o777) == "0o600"  # the token, the owner's alone
    refused = cli("login", "--url", cli.url, "--token", "paas_not-a-token", ok=False)
    assert refused.returncode == 1 and "unknown or revoked" in refused.stderr
    assert json.loads(cli.saved.read_text())["token"] == cli.token  # a refused login saves nothing
    assert "hello" in cli("apps:create", "hello").stdout
    assert [a["name"] for a in cli.json("apps")["apps"]] == ["hello"]

    deployed = cli("deploy", cwd=_source(tmp_path))
    assert "Released v1" in deployed.stdout, deployed.stderr
    assert "Build succeeded" in deployed.stderr  # the build log, followed live
    assert get(port, HOST) == (200, "Hello, world from hello-v1-web-1\n")

    assert "v1 is live" in cli("logs").stdout  # the platform's line in the app's log
    follower = cli.follow("logs", "-f")
    try:
        cli("config:set", "GREETING=Bonjour")
        wait_for(lambda: get(port, HOST)[1] == "Bonjour from hello-v2-web-1\n", 120, "v2 serving")
        assert follower.wait_for_line("v2 is live")  # arrived while following
    finally:
        follower.stop()

    ran = cli("run", "--", "sh", "-c", 'echo "ran with $GREETING"; exit 3', ok=False)
    assert ran.returncode == 3 and "ran with Bonjour" in ran.stdout, (ran.stdout, ran.stderr)
    assert {c["key"] for c in cli.json("config")["config"]} == {"GREETING"}

    cli("ps:scale", "web=2")
    wait_for(lambda: len(cli.json("ps")["instances"]) == 2, 120, "two instances")
    rows = cli("ps").stdout
    assert "web.1" in rows and "web.2" in rows

    cli("rollback")  # to v1: the release before the current one
    current = Release.objects.filter(app__name="hello", number=3, state=ReleaseState.CURRENT)
    v3 = wait_for(current.first, 120, "v3 to be current")
    assert v3.description == "Rollback to v1"
    wait_for(lambda: get(port, HOST)[1].startswith("Hello, world"), 60, "v1's greeting again")
    assert [r["label"] for r in cli.json("releases")["releases"]][:3] == ["v3", "v2", "v1"]

    refused = cli("apps:destroy", "hello", stdin="hullo\n", ok=False)
    assert refused.returncode == 1 and "Not destroyed" in refused.stderr
    cli("apps:destroy", "hello", stdin="hello\n")
    wait_for(lambda: not App.objects.filter(name="hello").exists(), 120, "the app to go")
    wait_for(lambda: container_names(agent) == [], 60, "its containers to go")


def test_a_failing_build_fails_the_deploy_with_its_reason(cli: Cli, tmp_path: Path) -> None:
    cli("apps:create", "hello")
    src = tmp_path / "broken"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM stack\nRUN echo about to fail && exit 7\n")
    done = cli("deploy", cwd=src, ok=False)
    assert done.returncode == 1
    assert "about to fail" in done.stderr  # the build log
    assert "exit code 7" in done.stderr  # the reason, last
