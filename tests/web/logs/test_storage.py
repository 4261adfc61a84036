"""Stored runtime logs: what ingest accepts, retention, and the download."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from paas.applications.services import app_create
from paas.core.errors import ValidationFailed
from paas.logs.lines import MAX_TEXT, IngestLine
from paas.logs.models import LogCursor, LogLine, LogSource
from paas.logs.services import logs_enforce_retention, logs_ingest, logs_store
from paas.logs.tasks import enforce_retention
from tests.web.deploy_support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(alice):
    return app_create(user=alice, team=alice.personal_team, name="shop")


def at(moment: datetime, text: str, **kw) -> IngestLine:
    return IngestLine(source=kw.pop("source", LogSource.APP), timestamp=moment, text=text, **kw)


def texts(app) -> list[str]:
    return list(LogLine.objects.filter(app=app).order_by("seq").values_list("text", flat=True))


def test_ingest_numbers_lines_per_app_and_refuses_what_would_corrupt_the_log(alice, shop):
    blog = app_create(user=alice, team=alice.personal_team, name="blog")
    now = datetime.now(UTC)
    logs_ingest(app_id=shop.pk, lines=[at(now, "a"), at(now, "b")])
    logs_ingest(app_id=blog.pk, lines=[at(now, "x")])
    logs_ingest(app_id=shop.pk, lines=[at(now, "c" * (MAX_TEXT + 10) + "\x00")])
    assert list(LogLine.objects.filter(app=shop).values_list("seq", flat=True)) == [1, 2, 3]
    assert list(LogLine.objects.filter(app=blog).values_list("seq", flat=True)) == [1]
    assert len(texts(shop)[-1]) == MAX_TEXT  # cut, not refused
    for bad in (
        at(datetime(2026, 1, 1), "naive time"),  # noqa: DTZ001 - refused on purpose
        at(now, "x", stream="stdin"),
        IngestLine(source="kernel", timestamp=now, text="x"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValidationFailed):
            logs_ingest(app_id=shop.pk, lines=[bad])
    assert len(texts(shop)) == 3  # a refused batch stores nothing


def test_retention_keeps_the_newest_lines_per_app_and_nothing_too_old(alice, shop, settings):
    settings.PAAS_LOG_RETENTION_LINES = 3
    settings.PAAS_LOG_RETENTION_DAYS = 2
    blog = app_create(user=alice, team=alice.personal_team, name="blog")
    now = datetime.now(UTC)
    logs_ingest(app_id=shop.pk, lines=[at(now, f"shop {i}") for i in range(5)])
    logs_ingest(app_id=blog.pk, lines=[at(now - timedelta(days=3), "old"), at(now, "new")])
    assert logs_enforce_retention() == 3
    assert texts(shop) == ["shop 2", "shop 3", "shop 4"]
    assert texts(blog) == ["new"]
    # New lines still number on from where the app was.
    logs_ingest(app_id=shop.pk, lines=[at(now, "shop 5")])
    assert LogLine.objects.get(app=shop, text="shop 5").seq == 6


def test_the_beat_task_enforces_retention_in_a_real_worker(shop, settings, workers):
    settings.PAAS_LOG_RETENTION_LINES = 0
    settings.PAAS_LOG_RETENTION_DAYS = 7  # the worker reads its own settings: 7 days
    now = datetime.now(UTC)
    logs_ingest(app_id=shop.pk, lines=[at(now - timedelta(days=8), "old"), at(now, "new")])
    workers.start()
    enforce_retention.delay()
    wait_for(lambda: texts(shop) == ["new"], 60, "the old line to go")


def test_download_returns_the_stored_matching_lines_as_text(client, alice, shop):
    t0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    logs_ingest(
        app_id=shop.pk,
        lines=[
            at(t0, "GET / 200", process_type="web", instance="web.1"),
            at(t0 + timedelta(seconds=1), "job failed", process_type="worker", instance="worker.1"),
            at(t0 + timedelta(seconds=2), 'method=GET path="/x" status=500',
               source=LogSource.ROUTER, process_type="router", instance="router"),
        ],
    )  # fmt: skip
    client.force_login(alice)
    response = client.get("/apps/shop/logs.txt")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert b"".join(response.streaming_content).decode().splitlines() == [
        "2026-12-04T12:00:00.000000Z app[web.1]: GET / 200",
        "2026-12-04T12:00:01.000000Z app[worker.1]: job failed",
        '2026-12-04T12:00:02.000000Z router[router]: method=GET path="/x" status=500',
    ]
    response = client.get("/apps/shop/logs.txt?process=worker&q=FAIL")
    assert b"".join(response.streaming_content).decode() == (
        "2026-12-04T12:00:01.000000Z app[worker.1]: job failed\n"
    )
    assert client.get("/apps/shop/logs.txt?source=kernel").status_code == 400


def test_download_is_refused_to_other_teams_and_anonymous_visitors(client, bob, shop):
    assert client.get("/apps/shop/logs.txt").status_code == 302  # to the sign-in page
    client.force_login(bob)
    assert client.get("/apps/shop/logs.txt").status_code == 404


def test_storing_moves_every_sources_cursor_in_a_fixed_number_of_queries(shop):
    # The follower stores each batch with the positions of all the sources it
    # came from (50 containers): one upsert, not two queries per source.
    now = datetime.now(UTC)
    logs_store(lines_by_app={shop.pk: [at(now, "a")]}, cursors={"c0": {"n": 0}})
    cursors = {f"c{i}": {"n": i} for i in range(50)}
    with CaptureQueriesContext(connection) as queries:
        logs_store(lines_by_app={shop.pk: [at(now, "b")]}, cursors=cursors)
    assert len(queries) <= 8
    assert dict(LogCursor.objects.values_list("key", "position")) == cursors
