from __future__ import annotations

import pytest

from paas.accounts.models import ApiToken
from paas.accounts.services import api_token_create, api_token_revoke

pytestmark = pytest.mark.django_db


def test_a_token_is_stored_only_as_its_hash(alice):
    token, raw = api_token_create(user=alice, name="laptop")
    assert raw.startswith("paas_")
    stored = ApiToken.objects.get(pk=token.pk)
    assert raw not in (stored.digest, stored.prefix)
    assert stored.prefix == raw[:12]


def test_the_token_page_shows_a_new_token_once(client, alice):
    client.force_login(alice)
    response = client.post("/tokens/", {"name": "laptop"})
    token = ApiToken.objects.get(user=alice)
    assert token.prefix.encode() in response.content
    assert b'id="new-token"' in response.content
    again = client.get("/tokens/")
    assert b'id="new-token"' not in again.content


def test_a_token_authenticates_and_records_when_it_was_used(client, alice):
    token, raw = api_token_create(user=alice, name="cli")
    assert token.last_used_at is None
    response = client.get("/api/v1/apps", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_revoked_token_is_refused(client, alice):
    token, raw = api_token_create(user=alice, name="cli")
    api_token_revoke(token=token)
    response = client.get("/api/v1/apps", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401
    assert "revoked" in response.json()["message"]


def test_no_token_is_401_with_a_hint(client):
    response = client.get("/api/v1/apps")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_bob_cannot_revoke_alices_token(client, alice, bob):
    token, _ = api_token_create(user=alice, name="cli")
    client.force_login(bob)
    assert client.post("/tokens/", {"revoke": token.pk}).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_api_creates_apps_and_refuses_bad_names(client, alice):
    _, raw = api_token_create(user=alice, name="cli")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    ok = client.post("/api/v1/apps", {"name": "api-app"}, content_type="application/json", **auth)
    assert ok.status_code == 201
    assert ok.json()["name"] == "api-app"
    bad = client.post(
        "/api/v1/apps", {"name": "a;touch /tmp/x"}, content_type="application/json", **auth
    )
    assert bad.status_code == 400
    assert bad.json()["field"] == "name"
    taken = client.post(
        "/api/v1/apps", {"name": "api-app"}, content_type="application/json", **auth
    )
    assert taken.status_code == 409
    garbage = client.post("/api/v1/apps", "{", content_type="application/json", **auth)
    assert garbage.status_code == 400
