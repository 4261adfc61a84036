"""Redis restarts without its data: the queued build task and a pending
release's deploy task are gone from the broker while the database still says
"queued" / "pending". The periodic re-drive sends them again, and a real
worker finishes them, once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas.applications.models import Release, ReleaseState
from paas.applications.releases import releases_redrive_pending
from paas.applications.services import app_create
from paas.builds.models import BuildState
from paas.builds.services import builds_redrive_queued
from paas.celery import app as celery_app
from tests.support.processes import free_port, wait_until
from tests.support.redis_server import run_redis
from tests.web.conftest import Workers
from tests.web.deploy_support import upload

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
