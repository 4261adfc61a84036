"""Fixtures for the control plane: a real Redis, a real Celery worker process
and named users in two teams."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.layers import channel_layers
from django.db import connection

from paas.accounts.models import Role, Team
from paas.accounts.services import team_add_member
from paas.celery import app as celery_app
from tests.support.agent_harness import AgentProcess, cleanup
from tests.support.build_env import build_environment
from tests.support.images import BuiltImage, build_busybox_image
from tests.support.processes import stop_process, wait_until
from tests.support.redis_server import run_redis
from tests.support.registry import TestRegistry
from tests.support.router import TestRouter, run_router
from tests.web.deploy_support import (
    add_host,
    agent_for,
    agent_root,
    container_names,
    use_registry_settings,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def _build_environment(
    tmp_path_factory: pytest.TempPathFactory, run_id: str
) -> Iterator[tuple[TestRegistry, dict[str, str]]]:
    """A real registry and build network for the worker's builds."""
    with build_environment(tmp_path_factory.mktemp("build-env"), run_id) as both:
        yield both


@pytest.fixture(scope="session")
def build_env(_build_environment: tuple[TestRegistry, dict[str, str]]) -> dict[str, str]:
    return _build_environment[1]


@pytest.fixture(scope="session")
def registry(_build_environment: tuple[TestRegistry, dict[str, str]]) -> TestRegistry:
    return _build_environment[0]


@pytest.fixture(autouse=True)
def live_redis(redis_url: str, settings: Any, tmp_path: Path) -> Iterator[None]:
    """Point Channels, Celery and the deploy lock at this run's Redis, uploads at a tmp dir."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        },
        "logs": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        },
    }
    settings.REDIS_URL = redis_url  # the deploy lock, taken in this process too
    settings.UPLOAD_DIR = tmp_path / "uploads"
    # A log follow over SSE ends soon in tests: none outlives its test.
    settings.PAAS_LOG_STREAM_MAX_S = 1.0
    settings.BUILD_DIR = tmp_path / "builds"
    channel_layers.backends.clear()
    celery_app.conf.broker_url = redis_url  # type: ignore[misc]
    yield
    channel_layers.backends.clear()


# busybox httpd (the deploy tests' image) runs as its container's PID 1 and
# sets no SIGTERM handler, so the kernel drops the SIGTERM of every stop and
# the agent SIGKILLs it when the grace has passed: all a longer grace does in
# a test is wait. 2 s, like the test agents' own PAAS_AGENT_STOP_GRACE_S.
STOP_GRACE_S = 2.0


@pytest.fixture(autouse=True)
def short_stop_grace(settings: Any) -> None:
    settings.PAAS_STOP_GRACE_S = STOP_GRACE_S


def _worker_env(redis_url: str) -> dict[str, str]:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        database_url = f"sqlite:///{db['NAME']}"
    else:
        database_url = (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    return {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "PAAS_STOP_GRACE_S": str(STOP_GRACE_S)}  # fmt: skip


class Workers:
    """Starts real `celery worker` processes on this run's Redis and test
    database, and stops them (by PID) at the end of the test."""

    def __init__(self, redis_url: str, tmp_path: Path, build_env: dict[str, str]) -> None:
        self.env = {**_worker_env(redis_url), **build_env}
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, pool: tuple[str, ...] = ("--pool", "solo")) -> subprocess.Popen[bytes]:
        """A worker; ``pool`` as scripts/up's Procfile gives it, e.g.
        ``("--pool", "threads", "--concurrency", "2")``, else one task at a time."""
        log_path = self.tmp_path / f"worker-{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "paas", "worker", *pool,
                 "--loglevel", "INFO", "--without-heartbeat", "--without-gossip",
                 "--without-mingle"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)

        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            return b"ready." in log_path.read_bytes()

        # Generous: a worker starts in seconds, but the machine may be loaded.
        wait_until(ready, timeout_s=90, what="the worker's 'ready.'")
        return proc

    @contextlib.contextmanager
    def beat(self) -> Iterator[None]:
        """A real ``celery beat`` with the workers' environment, stopped by
        its PID after."""
        log_path = self.tmp_path / "beat.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "paas", "beat", "--loglevel", "INFO",
                 "--schedule", str(self.tmp_path / "beat-schedule")],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            yield
        finally:
            stop_process(proc, grace_s=20)

    def stop_all(self) -> None:
        for proc in self.procs:  # all asked at once, then each waited for
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            stop_process(proc, grace_s=20)


@pytest.fixture
def workers(
    redis_url: str, transactional_db: None, tmp_path: Path, build_env: dict[str, str]
) -> Iterator[Workers]:
    pool = Workers(redis_url, tmp_path, build_env)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="alice", password="alice-pw-123")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    """Bob has his own team and is not in alice's."""
    return django_user_model.objects.create_user(username="bob", password="bob-pw-123")


@pytest.fixture
def carol_viewer_in_alices_team(django_user_model: Any, alice: Any) -> Any:
    carol = django_user_model.objects.create_user(username="carol", password="carol-pw-123")
    team_add_member(team=alice.personal_team, user=carol, role=Role.VIEWER)
    return carol


@pytest.fixture
def alices_team(alice: Any) -> Team:
    return alice.personal_team


# --- the deploy tests' agent, router, image and platform -----------------------
# Module-scoped: one agent per test module, whose image store keeps the stack
# after the first pull (each test leaves it empty), and one nginx. A module
# that needs another shape (test_two_hosts: agents in network namespaces;
# test_deploy_e2e: a worker too) defines its own fixture of the same name.


@pytest.fixture(scope="module")
def agent(registry: TestRegistry) -> Iterator[AgentProcess]:
    """A real agent process trusting the registry's CA, with no credential."""
    with agent_root() as root:
        proc = agent_for(registry, root)
        try:
            proc.start()
            yield proc
        finally:
            cleanup(proc)


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestRouter]:
    """The platform's real router (nginx); this process's settings point at it."""
    with run_router(tmp_path_factory.mktemp("router")) as running:
        yield running


@pytest.fixture(scope="session")
def busybox(registry: TestRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """busybox httpd on 8080, serving a fixed body; sh, dd and sleep for the
    rest. One per session: nothing changes an image once pushed."""
    return build_busybox_image(registry, tmp_path_factory.mktemp("busybox"))


@pytest.fixture
def platform(
    agent: AgentProcess, router: TestRouter, settings: Any, build_env: dict[str, str]
) -> Iterator[int]:
    """The module's agent as the one ready host and nginx as the router, for
    deploys made in this process; yields the router's HTTP port. Every
    container the test left on the agent is removed after."""
    use_registry_settings(settings, build_env)  # deploys here mint the agent's pull tokens
    settings.PAAS_HEALTH_TIMEOUT_S = 30.0
    settings.PAAS_DRAIN_SECONDS = 0.5
    add_host(agent)
    yield router.http_port
    for name in container_names(agent):
        agent.request("DELETE", f"/v1/containers/{name}?force=1")
