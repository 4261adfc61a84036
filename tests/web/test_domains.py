"""The "Domains and HTTPS" page and API: alice adds a domain and uploads a
certificate, sees its expiry; bad uploads say why; bob sees nothing of it;
a viewer cannot change it; the key is never shown back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from paas.accounts.services import api_token_create
from paas.applications.models import App
from paas.router.models import Domain
from tests.support.certs import self_signed

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(alice):
    return App.objects.create(team=alice.personal_team, name="shop")


def test_alice_adds_a_domain_and_uploads_its_certificate(client, alice, shop):
    client.force_login(alice)
    page = client.post(
        "/apps/shop/domains/", {"action": "add", "hostname": "Shop.Example.com"}, follow=True
    )
    assert b"Added shop.example.com" in page.content
    not_after = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    pem = self_signed("shop.example.com", not_after=not_after)
    page = client.post(
        "/apps/shop/domains/",
        {"action": "certificate", "hostname": "shop.example.com", **_pem_form(pem)},
        follow=True,
    )
    assert b"served over HTTPS" in page.content
    assert b"valid until" in page.content
    assert f">{not_after:%Y-%m-%d %H:%M} UTC</time>".encode() in page.content
    assert b"state-queued" in page.content  # expires within two weeks: flagged
    assert b"PRIVATE KEY-----\n" not in page.content


def test_a_bad_certificate_is_refused_with_the_reason(client, alice, shop):
    Domain.objects.create(app=shop, hostname="shop.example.com")
    client.force_login(alice)
    pem = self_signed("other.example.com")
    page = client.post(
        "/apps/shop/domains/",
        {"action": "certificate", "hostname": "shop.example.com", **_pem_form(pem)},
        follow=True,
    )
    assert b"does not cover shop.example.com: it is for other.example.com" in page.content
    assert not Domain.objects.get(hostname="shop.example.com").has_certificate


def test_bob_cannot_see_or_change_alices_domains(client, bob, shop):
    Domain.objects.create(app=shop, hostname="shop.example.com")
    client.force_login(bob)
    assert client.get("/apps/shop/domains/").status_code == 404
    assert client.post("/apps/shop/domains/", {"action": "remove"}).status_code == 404
    assert Domain.objects.filter(hostname="shop.example.com").exists()


def test_a_viewer_sees_domains_but_cannot_remove_them(client, carol_viewer_in_alices_team, alice):
    shop = App.objects.create(team=alice.personal_team, name="shop")
    Domain.objects.create(app=shop, hostname="shop.example.com")
    client.force_login(carol_viewer_in_alices_team)
    assert b"shop.example.com" in client.get("/apps/shop/domains/").content
    client.post("/apps/shop/domains/", {"action": "remove", "hostname": "shop.example.com"})
    assert Domain.objects.filter(hostname="shop.example.com").exists()


def test_the_api_manages_domains_and_certificates(client, alice, shop):
    _, raw = api_token_create(user=alice, name="cli")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    created = client.post(
        "/api/v1/apps/shop/domains", {"hostname": "shop.example.com"}, "application/json", **auth
    )
    assert created.status_code == 201
    assert created.json() == {"hostname": "shop.example.com", "certificate": None}

    bad = client.post(
        "/api/v1/apps/shop/domains", {"hostname": "x.y; evil"}, "application/json", **auth
    )
    assert bad.status_code == 400 and "Domain refused" in bad.json()["message"]

    pem = self_signed("shop.example.com")
    url = "/api/v1/apps/shop/domains/shop.example.com/certificate"
    body = {"certificate": pem.cert, "key": pem.key}
    put = client.put(url, body, "application/json", **auth)
    assert put.status_code == 200
    assert put.json()["certificate"]["names"] == ["shop.example.com"]
    assert "PRIVATE KEY" not in put.content.decode()
    assert set(put.json()) == {"hostname", "certificate"}

    listed = client.get("/api/v1/apps/shop/domains", **auth).json()["domains"]
    assert listed[0]["certificate"]["not_after"]
    assert client.delete("/api/v1/apps/shop/domains/shop.example.com", **auth).status_code == 204
    assert not Domain.objects.exists()


def _pem_form(pem):
    return {"certificate": pem.cert, "key": pem.key}
