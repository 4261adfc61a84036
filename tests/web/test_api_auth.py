"""Bearer tokens on every operation: none (401, with a hint and
WWW-Authenticate), malformed, revoked or unknown (401 bad_token), valid.
Tokens over the API: list your own, create (shown once), revoke. Hosts:
admins only."""

from __future__ import annotations

import re

import pytest

from paas.accounts.models import ApiToken
from paas.accounts.services import api_token_create, api_token_revoke
from paas.api.api import api
from paas.hosts.models import Host, JoinToken
from tests.web.api_support import auth

pytestmark = pytest.mark.django_db

PUBLIC = {("POST", "/hosts/join")}  # a host joins with a join token, not a user's


def _operations() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema(path_prefix="")
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, operations in schema["paths"].items()
        for method in operations
    ]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_operation_wants_a_token(client, method, path):
    response = client.generic(method, "/api/v1" + path)
    if (method, path) in PUBLIC:
        assert response.status_code == 400  # no join token: refused, not 401
        return
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthenticated",
        "message": "Send Authorization: Bearer <token>.",
    }
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6eA==", "Bearer", "Bearer   ", "paas_abc"])
def test_a_malformed_header_is_unauthenticated(client, alice, header):
    response = client.get("/api/v1/apps", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


def test_unknown_and_revoked_tokens_are_refused_and_valid_ones_work(client, alice):
    token, raw = api_token_create(user=alice, name="cli")
    ok = client.get("/api/v1/apps", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert ok.status_code == 200
    unknown = client.get("/api/v1/apps", HTTP_AUTHORIZATION=f"Bearer {raw}x")
    assert (unknown.status_code, unknown.json()["error"]) == (401, "bad_token")
    api_token_revoke(token=token)
    revoked = client.get("/api/v1/apps", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert (revoked.status_code, revoked.json()["error"]) == (401, "bad_token")
    assert revoked["WWW-Authenticate"].startswith("Bearer")


def test_an_inactive_users_token_is_refused(client, alice):
    headers = auth(alice)
    alice.is_active = False
    alice.save()
    assert client.get("/api/v1/apps", **headers).status_code == 401


def test_tokens_are_listed_created_once_and_revoked(client, alice, bob):
    headers = auth(alice)
    created = client.post("/api/v1/tokens", {"name": "laptop"}, "application/json", **headers)
    assert created.status_code == 201
    raw = created.json()["token"]
    assert raw.startswith("paas_") and created.json()["prefix"] == raw[:12]
    listing = client.get("/api/v1/tokens", **headers).json()
    assert [t["name"] for t in listing["tokens"]] == ["laptop", "t"]
    assert raw not in str(listing)
    assert "token" not in listing["tokens"][0]

    token_id = created.json()["id"]
    assert client.delete(f"/api/v1/tokens/{token_id}", **auth(bob)).status_code == 404
    assert client.get("/api/v1/apps", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    revoked = client.delete(f"/api/v1/tokens/{token_id}", **headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.get("/api/v1/apps", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert client.get("/api/v1/tokens", **auth(bob)).json()["tokens"][0]["name"] == "t"
    assert ApiToken.objects.filter(user=bob).count() == 2


def test_hosts_are_for_admins_only(client, alice, django_user_model):
    Host.objects.create(name="node-1", agent_url="http://127.0.0.1:9", token="secret-cred")
    headers = auth(alice)
    admin_only = [("GET", "/hosts"), ("GET", "/hosts/node-1"),
                  ("POST", "/hosts/join-tokens"), ("POST", "/hosts/node-1/state")]  # fmt: skip
    for method, path in admin_only:
        body = b'{"state": "draining"}' if path.endswith("state") else b"{}"
        response = client.generic(method, "/api/v1" + path, body, "application/json", **headers)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "forbidden"
    admin = django_user_model.objects.create_user(username="root", password="x", is_staff=True)
    as_admin = auth(admin)
    listing = client.get("/api/v1/hosts", **as_admin)
    assert [h["name"] for h in listing.json()["hosts"]] == ["node-1"]
    assert "secret-cred" not in listing.content.decode()
    drained = client.post("/api/v1/hosts/node-1/state", {"state": "draining"},
                          "application/json", **as_admin)  # fmt: skip
    assert drained.json()["state"] == "draining"
    assert Host.objects.get().state == "draining"
    bad = client.post("/api/v1/hosts/node-1/state", {"state": "gone"}, "application/json",
                      **as_admin)  # fmt: skip
    assert (bad.status_code, bad.json()["field"]) == (400, "state")
    assert client.get("/api/v1/hosts/nope", **as_admin).status_code == 404
    join = client.post("/api/v1/hosts/join-tokens", {"note": "n2"}, "application/json", **as_admin)
    assert join.status_code == 201 and join.json()["join_token"].startswith("join_")
    rejoin = client.post("/api/v1/hosts/join-tokens", {"rejoin": "node-1"}, "application/json",
                         **as_admin)  # fmt: skip
    assert rejoin.status_code == 201
    assert JoinToken.objects.get(rejoin__name="node-1")
    unknown = client.post("/api/v1/hosts/join-tokens", {"rejoin": "nope"}, "application/json",
                          **as_admin)  # fmt: skip
    assert unknown.status_code == 404


def test_csrf_does_not_apply_a_bearer_token_is_no_cookie(alice):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    token = auth(alice)["HTTP_AUTHORIZATION"]
    created = strict.post(
        "/api/v1/apps", {"name": "no-csrf"}, "application/json", HTTP_AUTHORIZATION=token
    )
    assert created.status_code == 201
    join = strict.post("/api/v1/hosts/join", {"join_token": "x"}, "application/json")
    # Refused for its token (checked first), not by a CSRF check.
    assert join.status_code == 403 and join.json()["error"] == "join_refused", join.content


def test_a_session_cookie_alone_does_not_authenticate(client, alice):
    client.force_login(alice)
    assert client.get("/api/v1/apps").status_code == 401
