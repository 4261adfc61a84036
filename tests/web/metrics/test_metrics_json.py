"""The app page's metrics JSON: columns a chart draws, for the app's own team
only (another team's app is a 404, exactly like a missing one)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from paas.applications.services import app_create
from paas.metrics.services import metrics_downsample
from tests.web.metrics.support import T0, fine

pytestmark = pytest.mark.django_db


@pytest.fixture
def app(alice):
    return app_create(user=alice, team=alice.personal_team, name="metered")


@pytest.fixture
def now_is_t0(monkeypatch):
    # The selector reads "the last hour" from now; the points sit at T0.
    monkeypatch.setattr("django.utils.timezone.now", lambda: T0 + timedelta(minutes=10))


def test_it_answers_one_column_per_instance_aligned_on_times(client, alice, app, now_is_t0):
    fine(app, 0, cpu=None, memory=100)
    fine(app, 10, cpu=25.0, memory=200)
    fine(app, 10, container="web2", instance="web.2", cpu=50.0, memory=300)
    client.force_login(alice)

    body = client.get("/apps/metered/metrics.json?span=1h").json()

    start = int(T0.timestamp())
    assert body["span"] == "1h" and body["step_s"] == 10
    assert body["times"] == [start, start + 10]
    assert body["series"] == [
        {"label": "web.1 (v1)", "container": "web1", "cpu_percent": [None, 25.0],
         "memory_bytes": [100, 200], "memory_limit_bytes": 64 * 2**20},
        {"label": "web.2 (v1)", "container": "web2", "cpu_percent": [None, 50.0],
         "memory_bytes": [None, 300], "memory_limit_bytes": 64 * 2**20},
    ]  # fmt: skip


def test_the_day_span_reads_five_minute_points(client, alice, app, now_is_t0):
    fine(app, 10, cpu=30.0)
    metrics_downsample(now=T0 + timedelta(minutes=6))
    client.force_login(alice)

    body = client.get("/apps/metered/metrics.json?span=24h").json()

    assert body["step_s"] == 300
    assert body["times"] == [int(T0.timestamp())]
    assert body["series"][0]["cpu_percent"] == [30.0]


def test_bob_in_another_team_gets_404(client, bob, app, now_is_t0):
    fine(app, 10)
    client.force_login(bob)
    response = client.get("/apps/metered/metrics.json")
    assert response.status_code == 404
    assert b"web1" not in response.content
    assert client.get("/apps/no-such-app/metrics.json").status_code == 404


def test_a_viewer_in_the_team_may_look(client, carol_viewer_in_alices_team, app, now_is_t0):
    fine(app, 10)
    client.force_login(carol_viewer_in_alices_team)
    assert client.get("/apps/metered/metrics.json").json()["series"][0]["container"] == "web1"


def test_an_unknown_span_is_a_clear_400(client, alice, app):
    client.force_login(alice)
    response = client.get("/apps/metered/metrics.json?span=7d")
    assert response.status_code == 400
    assert response.json()["field"] == "span"
    assert "1h, 24h" in response.json()["message"]


def test_a_visitor_must_sign_in(client, app):
    response = client.get("/apps/metered/metrics.json")
    assert response.status_code == 302 and "/login/" in response["Location"]
