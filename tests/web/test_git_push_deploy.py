"""`git push` end to end on every real part: daphne serves the git endpoint,
a Celery worker builds the pushed commit into the registry, the release runs
on a real agent and nginx routes to it; the push shows the build log and the
rollout as `remote:` lines and exits 0 once the app answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas.accounts.services import api_token_create
from paas.applications.models import Release, ReleaseState
from paas.applications.services import app_create
from paas.gitdeploy.repos import repo_path
from paas.hosts.app_delete import app_delete_request
from tests.support.agent_harness import AgentProcess, cleanup
from tests.support.daphne import Daphne, run_daphne
from tests.support.processes import free_port
from tests.support.registry import TestRegistry
from tests.support.router import TestRouter, run_router
from tests.web.deploy_support import (
    add_host,
    agent_for,
    agent_root,
    container_names,
    get,
    wait_for,
)
from tests.web.git_support import GitClient, remote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]


@pytest.fixture
def platform(
    registry: TestRegistry, workers: Any, settings: Any, tmp_path: Path
) -> Iterator[tuple[Daphne, TestRouter]]:
    with agent_root() as root, run_router(tmp_path / "router") as router:
        agent = agent_for(registry, root)
        try:
            agent.start()
            first_tcp = free_port()
            workers.env.update({
                **router.env, "PAAS_DRAIN_SECONDS": "0.5", "PAAS_HEALTH_TIMEOUT_S": "30",
                "PAAS_TCP_PORTS_FIRST": str(first_tcp), "PAAS_TCP_PORTS_LAST": str(first_tcp + 2),
                # As tests/web/test_deploy_e2e.py: beside it, never overlapping.
                "PAAS_ROUTE_PORTS_FIRST": str(first_tcp + 3),
                "PAAS_ROUTE_PORTS_LAST": str(first_tcp + 5),
            })  # fmt: skip
            settings.PAAS_HEALTH_TIMEOUT_S = 30.0
            add_host(agent)
            workers.start()
            with run_daphne(workers.env, tmp_path) as daphne:
                yield daphne, router
            _remove_containers(agent)
        finally:
            cleanup(agent)


def _remove_containers(agent: AgentProcess) -> None:
    for name in container_names(agent):
        agent.request("DELETE", f"/v1/containers/{name}?force=1")


def test_git_push_builds_rolls_out_and_serves_the_commit(
    platform: tuple[Daphne, TestRouter], alice: Any, tmp_path: Path
) -> None:
    daphne, router = platform
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    token = api_token_create(user=alice, name="laptop")[1]
    git = GitClient(tmp_path / "home")
    repo = git.repo(tmp_path / "src")

    result = git.push(repo, remote(daphne, "hello", token))

    assert result.returncode == 0, result.stderr
    assert "refs/heads/main:refs/heads/main\t[new branch]" in result.stdout
    out = result.stderr
    # The build log, then the rollout, in order, as the push ran.
    steps = ["remote: -----> Build #1 queued", "remote: -----> Build succeeded",
             "remote: -----> Releasing v1", "remote: -----> v1 is live at"]  # fmt: skip
    positions = [out.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), out
    release = Release.objects.get(app__name="hello", number=1)
    assert release.state == ReleaseState.CURRENT
    assert get(router.http_port, "hello.localhost") == (200, "Hello, world from hello-v1-web-1\n")

    # Deleting the app deletes its repository too.
    repo_dir = repo_path(app=app)
    assert repo_dir.is_dir()
    app_delete_request(user=alice, app=app, confirm="hello")
    wait_for(lambda: not repo_dir.exists(), 60, "the app's repository to be removed")
