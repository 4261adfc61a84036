"""Redis restarts without its data: the queued build task and a pending
release's deploy task are gone from the broker while the database still says
"queued" / "pending". The periodic re-drive sends them again, and a real
worker finishes them, once. Same when a worker dies holding a message it had
just taken from a queue (popped, not yet filed as unacked)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from paas.applications.models import Release, ReleaseState
from paas.applications.releases import releases_redrive_pending
from paas.applications.services import app_create
from paas.builds.models import BuildState
from paas.builds.services import builds_redrive_queued
from paas.celery import app as celery_app
from paas.core.redrive import enqueue_marked
from paas.hosts.tasks import deploy_release
from tests.support.processes import free_port, wait_until
from tests.support.redis_server import run_redis
from tests.web.conftest import Workers
from tests.web.deploy_support import upload
from tests.web.fault_support import forget_messages, kill

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def _broker(url: str) -> None:
    """Send this process's tasks to ``url`` (the producer pool keeps the old one)."""
    celery_app.conf.broker_url = url  # type: ignore[misc]
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]


@pytest.fixture
def own_broker(redis_url: str) -> Iterator[int]:
    """A port for this test's own Redis; the session's one is put back after."""
    yield free_port()
    _broker(redis_url)


def test_tasks_lost_with_a_redis_restart_are_sent_again_and_done_once(
    client: Any, alice: Any, tmp_path: Path, settings: Any, build_env: dict[str, str],
    own_broker: int,
) -> None:  # fmt: skip
    settings.PAAS_REDRIVE_AFTER_S = 0.0
    app_create(user=alice, team=alice.personal_team, name="redrive")
    other = app_create(user=alice, team=alice.personal_team, name="redrive-release")
    with run_redis(tmp_path / "redis-1", own_broker) as url:
        _broker(url)
        build = upload(client, alice, "redrive")  # its task goes to this Redis, no worker yet
        # A release whose deploy task is as lost (never sent here, at all).
        release = Release.objects.create(app=other, number=1, image="registry/none:v1")
        assert builds_redrive_queued() == []  # its task is still in the broker: left alone
    with run_redis(tmp_path / "redis-2", own_broker) as url:  # the same Redis, restarted empty
        _broker(url)
        workers = Workers(url, tmp_path, build_env)
        try:
            workers.start()
            assert builds_redrive_queued() == [str(build.pk)]
            assert releases_redrive_pending() == [release.pk]
            assert builds_redrive_queued() == [] and releases_redrive_pending() == []

            def build_ended() -> str | None:
                build.refresh_from_db()
                return build.state if build.state not in ("queued", "building") else None

            assert wait_until(build_ended, timeout_s=300, what="the build") == BuildState.SUCCEEDED
            release.refresh_from_db()
            # Nothing in its formation to place: its deploy makes it current at once.
            live = Release.objects.filter(pk=release.pk, state=ReleaseState.CURRENT)
            wait_until(live.exists, timeout_s=120, what="the release's deploy to end")
        finally:
            workers.stop_all()
    assert build.log_lines.filter(text__contains="Build succeeded").count() == 1  # ran once


def _blocked_in_brpop(url: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        clients = cast(list[dict[str, str]], client.client_list())
        return any(c["cmd"] == "brpop" and "b" in c["flags"] for c in clients)
    finally:
        client.close()


def _frozen_while_fetching(worker: Any, url: str) -> None:
    """Stops ``worker`` (SIGSTOP) at a moment its BRPOP on the queues is
    outstanding in Redis: a message pushed now is popped into its socket."""

    def frozen() -> bool:
        os.kill(worker.pid, signal.SIGSTOP)
        if _blocked_in_brpop(url):
            return True
        os.kill(worker.pid, signal.SIGCONT)  # between two BRPOPs: try again
        return False

    wait_until(frozen, timeout_s=60, what="the worker blocked in BRPOP")


def test_a_build_whose_message_died_with_a_worker_is_sent_again(
    client: Any, alice: Any, settings: Any, workers: Workers, redis_url: str
) -> None:
    """The worker is killed after Redis handed it the build's message (its
    BRPOP popped it) and before kombu filed it as unacked: the message is
    nowhere in Redis, though the enqueue marker is. The re-drive sees that
    the broker holds no message for the build and sends it again (before,
    it trusted the marker: the build stayed queued for the marker's hour)."""
    settings.PAAS_REDRIVE_AFTER_S = 0.0
    app_create(user=alice, team=alice.personal_team, name="redrive-killed")
    forget_messages(redis_url)
    worker = workers.start()
    _frozen_while_fetching(worker, redis_url)
    build = upload(client, alice, "redrive-killed")
    kill(worker)
    broker = redis.Redis.from_url(redis_url)
    try:  # the setup: the message went to the dead worker, nowhere else
        assert broker.llen("builds") == 0 and broker.hlen("unacked") == 0
        assert broker.exists(f"paas:enqueued:build:{build.pk}")
    finally:
        broker.close()
    build.refresh_from_db()
    assert build.state == BuildState.QUEUED

    assert builds_redrive_queued() == [str(build.pk)]
    assert builds_redrive_queued() == []  # its new message is in the broker
    workers.start()

    def build_ended() -> str | None:
        build.refresh_from_db()
        return build.state if build.state not in ("queued", "building") else None

    assert wait_until(build_ended, timeout_s=300, what="the build") == BuildState.SUCCEEDED
    assert build.log_lines.filter(text__contains="Build succeeded").count() == 1  # ran once


def test_a_deploy_whose_message_died_with_a_worker_is_sent_again(
    alice: Any, settings: Any, workers: Workers, redis_url: str
) -> None:
    """The same for a pending release's deploy task (the ``celery`` queue)."""
    settings.PAAS_REDRIVE_AFTER_S = 0.0
    app = app_create(user=alice, team=alice.personal_team, name="redrive-deploy")
    release = Release.objects.create(app=app, number=1, image="registry/none:v1")
    forget_messages(redis_url)
    worker = workers.start()
    _frozen_while_fetching(worker, redis_url)
    enqueue_marked("release", release.pk, deploy_release.delay)
    kill(worker)
    broker = redis.Redis.from_url(redis_url)
    try:
        assert broker.llen("celery") == 0 and broker.hlen("unacked") == 0
    finally:
        broker.close()

    assert releases_redrive_pending() == [release.pk]
    assert releases_redrive_pending() == []
    workers.start()
    # Nothing in its formation to place: its deploy makes it current at once.
    live = Release.objects.filter(pk=release.pk, state=ReleaseState.CURRENT)
    wait_until(live.exists, timeout_s=120, what="the release's deploy to end")
