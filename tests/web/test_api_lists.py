"""Lists are paged (limit/offset, total, next_offset); logs are paged by
sequence number and filtered; every error has one shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paas.applications.services import app_create
from paas.logs.lines import IngestLine
from paas.logs.models import LogSource
from paas.logs.services import logs_ingest
from tests.web.api_support import auth

pytestmark = pytest.mark.django_db


@pytest.fixture
def five_apps(alice):
    for name in ("a-1", "a-2", "a-3", "a-4", "a-5"):
        app_create(user=alice, team=alice.personal_team, name=name)


def test_apps_are_paged(client, alice, five_apps):
    headers = auth(alice)
    first = client.get("/api/v1/apps?limit=2", **headers).json()
    assert [a["name"] for a in first["apps"]] == ["a-1", "a-2"]
    assert (first["total"], first["next_offset"]) == (5, 2)
    last = client.get("/api/v1/apps?limit=2&offset=4", **headers).json()
    assert ([a["name"] for a in last["apps"]], last["next_offset"]) == (["a-5"], None)


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "offset=-1", "offset=1.5"])
def test_bad_paging_is_a_400_naming_the_parameter(client, alice, query):
    response = client.get(f"/api/v1/apps?{query}", **auth(alice))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert body["field"] == query.split("=")[0]
    assert body["message"].startswith(body["field"])


@pytest.fixture
def logged_app(alice):
    app = app_create(user=alice, team=alice.personal_team, name="chatty")
    now = datetime.now(UTC)
    lines = [
        IngestLine(LogSource.APP, now, f"web says {i}", "stdout", "web", "web.1")
        for i in range(1, 8)
    ]
    lines.append(IngestLine(LogSource.APP, now, "worker says hi", "stderr", "worker", "worker.1"))
    logs_ingest(app_id=app.pk, lines=lines)
    return app


def _ids(page):
    return [line["id"] for line in page["lines"]]


def test_logs_are_paged_backwards_and_polled_forwards(client, alice, logged_app):
    headers = auth(alice)
    newest = client.get("/api/v1/apps/chatty/logs?limit=3", **headers).json()
    assert _ids(newest) == [6, 7, 8]
    assert newest["lines"][-1] == {
        "id": 8, "time": newest["lines"][-1]["time"], "source": "app",
        "process_type": "worker", "instance": "worker.1", "stream": "stderr",
        "text": "worker says hi",
    }  # fmt: skip
    assert (newest["next_before"], newest["next"]) == (6, 8)
    assert newest["websocket"] == "/ws/apps/chatty/logs/"
    older = client.get("/api/v1/apps/chatty/logs?limit=3&before=6", **headers).json()
    assert _ids(older) == [3, 4, 5]
    oldest = client.get("/api/v1/apps/chatty/logs?limit=3&before=3", **headers).json()
    assert (_ids(oldest), oldest["next_before"]) == ([1, 2], None)
    since = client.get("/api/v1/apps/chatty/logs?since=6&limit=1", **headers).json()
    assert (_ids(since), since["next"]) == ([7], 7)
    nothing_new = client.get("/api/v1/apps/chatty/logs?since=8", **headers).json()
    assert (nothing_new["lines"], nothing_new["next"]) == ([], 8)
    none_matching = client.get("/api/v1/apps/chatty/logs?ps=nope", **headers).json()
    assert (none_matching["lines"], none_matching["next"]) == ([], 8)


def test_logs_are_filtered(client, alice, logged_app):
    headers = auth(alice)
    for query in ("ps=worker", "process=worker", "instance=worker.1"):
        worker = client.get(f"/api/v1/apps/chatty/logs?{query}", **headers).json()
        assert [line["text"] for line in worker["lines"]] == ["worker says hi"], query
    found = client.get("/api/v1/apps/chatty/logs?q=SAYS%203", **headers).json()
    assert _ids(found) == [3]
    bad = client.get("/api/v1/apps/chatty/logs?source=kernel", **headers)
    assert (bad.status_code, bad.json()["field"]) == (400, "source")
    for query in ("since=abc", "before=-1", "limit=1001", "q=%00", "since=1.5"):
        response = client.get(f"/api/v1/apps/chatty/logs?{query}", **headers)
        assert response.status_code == 400, query


def test_errors_have_one_shape(client, alice):
    headers = auth(alice)
    missing = client.get("/api/v1/apps/nope", **headers)
    assert missing.json() == {"error": "not_found", "message": "No app named 'nope'."}
    not_json = client.post("/api/v1/apps", b"{", "application/json", **headers)
    assert not_json.status_code == 400 and not_json.json()["error"] == "invalid"
    not_object = client.post("/api/v1/apps", b"[1]", "application/json", **headers)
    assert not_object.status_code == 400
    wrong_type = client.post("/api/v1/apps", {"name": 5}, "application/json", **headers)
    assert (wrong_type.status_code, wrong_type.json()["field"]) == (400, "name")
    nul = client.get("/api/v1/apps/a%00b", **headers)
    assert (nul.status_code, nul.json()["field"]) == (400, "name")


def test_an_app_is_shown_and_destroyed_only_with_its_name_typed_again(client, alice, settings):
    settings.PAAS_DOMAIN, settings.PAAS_ROUTER_PORT = "apps.example.net", 8080
    headers = auth(alice)
    created = client.post("/api/v1/apps", {"name": "doomed"}, "application/json", **headers)
    shown = client.get("/api/v1/apps/doomed", **headers)
    assert shown.json() == created.json()
    assert shown.json()["url"] == "http://doomed.apps.example.net:8080"
    settings.PAAS_ROUTER_PORT = 80
    assert client.get("/api/v1/apps", **headers).json()["apps"][0]["url"] == (
        "http://doomed.apps.example.net"
    )
    wrong = client.delete("/api/v1/apps/doomed?confirm=other", **headers)
    assert (wrong.status_code, wrong.json()["field"]) == (400, "confirm")
    assert client.delete("/api/v1/apps/doomed", **headers).status_code == 400
    right = client.delete("/api/v1/apps/doomed?confirm=doomed", **headers)
    assert right.json() == {"app": "doomed", "deleting": True}


def test_a_bare_post_runs_an_action_with_its_defaults(client, alice):
    # Some clients send an empty form with a POST that has no body to send.
    app_create(user=alice, team=alice.personal_team, name="bare")
    response = client.post("/api/v1/apps/bare/actions/restart", **auth(alice))
    assert response.status_code == 202
    unknown = client.post("/api/v1/apps/bare/actions/explode", **auth(alice))
    assert (unknown.status_code, unknown.json()["field"]) == (400, "action")


def test_a_path_the_api_does_not_have_is_a_json_404(client, alice):
    for headers in ({}, auth(alice)):
        response = client.get("/api/v1/no/such/thing", **headers)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
