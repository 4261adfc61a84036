"""The deploy API: config vars (values only for owners, never in a release's
JSON or the audit log), releases and rollback, scaling's validation."""

from __future__ import annotations

from typing import Any

import pytest

from paas.accounts.models import Role
from paas.accounts.services import api_token_create, team_add_member
from paas.applications.models import AuditEntry, Release, ReleaseCause, ReleaseState
from paas.applications.services import app_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app(alice: Any) -> Any:
    return app_create(user=alice, team=alice.personal_team, name="api-app")


def _auth(user: Any) -> dict[str, str]:
    _, raw = api_token_create(user=user, name="t")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def _post(client: Any, user: Any, path: str, body: Any) -> Any:
    return client.post(path, body, content_type="application/json", **_auth(user))


def test_config_values_are_shown_to_owners_only(client: Any, alice: Any, app: Any,
                                                django_user_model: Any) -> None:  # fmt: skip
    dave = django_user_model.objects.create_user(username="dave", password="dave-pw-123")
    team_add_member(team=alice.personal_team, user=dave, role=Role.MEMBER)
    response = _post(client, alice, "/api/v1/apps/api-app/config", {"set": {"DB_URL": "s3cret"}})
    assert response.status_code == 200, response.content
    assert response.json() == {"release": None}  # nothing built yet: no release
    as_owner = client.get("/api/v1/apps/api-app/config", **_auth(alice)).json()
    assert as_owner == {"config": [{"key": "DB_URL", "value": "s3cret"}]}
    as_member = client.get("/api/v1/apps/api-app/config", **_auth(dave)).content
    assert b"s3cret" not in as_member and b"DB_URL" in as_member
    audit = client.get("/api/v1/apps/api-app/audit", **_auth(alice)).content
    assert b"s3cret" not in audit and b"config.set" in audit


def test_a_viewer_cannot_change_config(client: Any, carol_viewer_in_alices_team: Any,
                                       app: Any) -> None:  # fmt: skip
    response = _post(client, carol_viewer_in_alices_team, "/api/v1/apps/api-app/config",
                     {"set": {"A": "b"}})  # fmt: skip
    assert response.status_code == 403


def test_bad_config_keys_are_refused_by_name(client: Any, alice: Any, app: Any) -> None:
    for key in ("1ABC", "A-B", "PORT", ""):
        response = _post(client, alice, "/api/v1/apps/api-app/config", {"set": {key: "x"}})
        assert response.status_code == 400, key
    assert not app.config_vars.exists()


def test_a_config_change_makes_a_release_and_a_rollback_another(
    client: Any, alice: Any, app: Any
) -> None:
    Release.objects.create(app=app, number=1, image="reg/api-app@sha256:aa", cause="build",
                           process_types={"web": "python3 app.py"},
                           state=ReleaseState.CURRENT)  # fmt: skip
    response = _post(client, alice, "/api/v1/apps/api-app/config", {"set": {"TOKEN": "t0p"}})
    v2 = response.json()["release"]
    assert (v2["number"], v2["cause"], v2["config_keys"]) == (2, "config", ["TOKEN"])
    assert "t0p" not in response.content.decode()
    stored = Release.objects.get(app=app, number=2)
    assert stored.config == {"TOKEN": "t0p"}
    assert stored.image == "reg/api-app@sha256:aa"

    response = _post(client, alice, "/api/v1/apps/api-app/releases/1/rollback", {})
    assert response.status_code == 201
    v3 = Release.objects.get(app=app, number=3)
    assert (v3.cause, v3.config, v3.description) == (ReleaseCause.ROLLBACK, {}, "Rollback to v1")
    assert _post(client, alice, "/api/v1/apps/api-app/releases/9/rollback", {}).status_code == 404
    listed = client.get("/api/v1/apps/api-app/releases", **_auth(alice)).json()["releases"]
    assert [r["label"] for r in listed] == ["v3", "v2", "v1"]
    assert AuditEntry.objects.filter(app=app, action="release.rollback").count() == 1


def test_scaling_validates_its_input(client: Any, alice: Any, app: Any) -> None:
    Release.objects.create(app=app, number=1, image="reg/x@sha256:aa", cause="build")
    from paas.applications.releases import _ensure_formation

    _ensure_formation(app, {})
    path = "/api/v1/apps/api-app/formation/web"
    assert _post(client, alice, path, {"count": -1}).status_code == 400
    assert _post(client, alice, path, {"count": "3"}).status_code == 400
    assert _post(client, alice, path, {"count": 99}).status_code == 400
    assert _post(client, alice, "/api/v1/apps/api-app/formation/nope", {"count": 1}).status_code \
        == 404  # fmt: skip
    assert _post(client, alice, path, {"count": 2}).status_code == 202
    formation = client.get("/api/v1/apps/api-app/formation", **_auth(alice)).json()
    assert formation["formation"][0]["count"] == 2


def test_a_new_memory_limit_rolls_a_release_and_a_new_count_does_not(
    client: Any, alice: Any, app: Any
) -> None:
    Release.objects.create(app=app, number=1, image="reg/x@sha256:aa", cause="build",
                           state=ReleaseState.CURRENT)  # fmt: skip
    from paas.applications.releases import _ensure_formation

    _ensure_formation(app, {})
    path = "/api/v1/apps/api-app/formation/web"
    assert _post(client, alice, path, {"count": 2}).status_code == 202
    assert app.releases.count() == 1
    body = {"count": 2, "memory_bytes": 512 * 2**20}
    assert _post(client, alice, path, body).status_code == 202
    v2 = Release.objects.get(app=app, number=2)
    assert (v2.description, v2.image) == ("Memory of web: 512 MiB", "reg/x@sha256:aa")
    assert _post(client, alice, path, body).status_code == 202  # unchanged: no release
    assert app.releases.count() == 2
