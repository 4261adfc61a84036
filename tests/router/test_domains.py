"""Custom domains: normalised, checked as DNS names, never under the
platform's own domain, unique across the platform, only for members who may
deploy; a certificate is checked before it is stored, its key sealed, and
the app's Routes serve the domain over HTTPS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from paas.accounts.models import Role
from paas.accounts.services import team_add_member
from paas.applications.models import App
from paas.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from paas.router.domains import domain_add, domain_clear_certificate, domain_set_certificate
from paas.router.errors import CertificateRejected
from paas.router.models import Domain
from paas.router.routes import Upstream
from paas.router.selectors import app_hostnames, app_routes_for, routes_for_apps
from paas.router.services import router_apply
from tests.support.backends import Backend
from tests.support.certs import self_signed
from tests.support.router import TestRouter

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="alice", password="alice-pw-123")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="bob", password="bob-pw-123")


@pytest.fixture
def shop(alice: Any) -> App:
    return App.objects.create(team=alice.personal_team, name="shop")


def test_a_domain_is_normalised_and_added(alice: Any, shop: App, settings: Any) -> None:
    settings.PAAS_DOMAIN = "localhost"
    domain_add(user=alice, app=shop, hostname=" Shop.Example.COM. ")
    domain_add(user=alice, app=shop, hostname="bücher.example")
    assert app_hostnames(app=shop) == [
        "shop.localhost",
        "shop.example.com",
        "xn--bcher-kva.example",
    ]


@pytest.mark.parametrize(
    "hostname", ["evil.example; x", "*.example.com", "10.0.0.1", "localhost", "a..b", ""]
)
def test_a_bad_domain_is_refused(alice: Any, shop: App, hostname: str) -> None:
    with pytest.raises(ValidationFailed):
        domain_add(user=alice, app=shop, hostname=hostname)
    assert not Domain.objects.exists()


def test_names_under_the_platform_domain_are_refused(alice: Any, shop: App, settings: Any) -> None:
    settings.PAAS_DOMAIN = "apps.example.net"
    with pytest.raises(ValidationFailed, match="under the platform's domain"):
        domain_add(user=alice, app=shop, hostname="other-app.apps.example.net")


def test_a_domain_is_unique_across_the_platform(alice: Any, bob: Any, shop: App) -> None:
    bobs = App.objects.create(team=bob.personal_team, name="bobs-shop")
    domain_add(user=alice, app=shop, hostname="shop.example.com")
    with pytest.raises(Conflict) as taken:
        domain_add(user=bob, app=bobs, hostname="SHOP.example.com")
    assert "shop" not in taken.value.message.replace("shop.example.com", "")  # no leak


def test_only_members_who_deploy_may_add_domains(
    alice: Any, bob: Any, shop: App, django_user_model: Any
) -> None:
    with pytest.raises(NotFound):
        domain_add(user=bob, app=shop, hostname="shop.example.com")
    carol = django_user_model.objects.create_user(username="carol", password="carol-pw-123")
    team_add_member(team=alice.personal_team, user=carol, role=Role.VIEWER)
    with pytest.raises(PermissionDenied):
        domain_add(user=carol, app=shop, hostname="shop.example.com")


def test_a_certificate_is_checked_then_stored_with_its_key_sealed(alice: Any, shop: App) -> None:
    domain = domain_add(user=alice, app=shop, hostname="shop.example.com")
    wrong = self_signed("other.example.com")
    with pytest.raises(CertificateRejected, match="does not cover shop.example.com"):
        domain_set_certificate(user=alice, domain=domain, cert_pem=wrong.cert, key_pem=wrong.key)
    domain.refresh_from_db()
    assert not domain.has_certificate

    pem = self_signed("shop.example.com")
    domain_set_certificate(user=alice, domain=domain, cert_pem=pem.cert, key_pem=pem.key)
    domain.refresh_from_db()
    assert domain.cert_not_after is not None
    assert "PRIVATE KEY" not in domain.key_sealed
    (tls_route,) = [r for r in app_routes_for(app=shop, upstreams=()) if r.tls]
    assert tls_route.hostnames == ("shop.example.com",)
    assert tls_route.tls is not None and "PRIVATE KEY" in tls_route.tls.key_pem

    domain_clear_certificate(user=alice, domain=domain)
    assert all(r.tls is None for r in app_routes_for(app=shop, upstreams=()))


def test_a_domain_with_a_certificate_is_served_over_https(
    alice: Any, shop: App, router: TestRouter, backends: list[Backend], tmp_path: Path
) -> None:
    domain = domain_add(user=alice, app=shop, hostname="shop.example.com")
    pem = self_signed("shop.example.com")
    domain_set_certificate(user=alice, domain=domain, cert_pem=pem.cert, key_pem=pem.key)
    router_apply(
        routes=app_routes_for(app=shop, upstreams=[Upstream("127.0.0.1", backends[0].port)])
    )
    ca = tmp_path / "ca.pem"
    ca.write_text(pem.cert)
    response = router.get_https("shop.example.com", ca)
    assert response.status == 200
    assert json.loads(response.data)["backend"] == "one"  # type: ignore[attr-defined]
    assert router.get("shop.example.com").status == 308


def test_routes_for_many_apps_take_one_query_for_their_domains(
    alice: Any, shop: App, django_assert_num_queries: Any, settings: Any
) -> None:
    settings.PAAS_DOMAIN = "localhost"
    blog = App.objects.create(team=alice.personal_team, name="blog")
    domain_add(user=alice, app=shop, hostname="shop.example.com")
    domain_add(user=alice, app=blog, hostname="blog.example.com")
    up = Upstream("127.0.0.1", 8000)
    with django_assert_num_queries(1):
        routes = routes_for_apps(apps=[shop, blog], upstreams={shop.pk: [up]})
    assert [(r.app, r.hostnames, r.upstreams) for r in routes] == [
        ("shop", ("shop.localhost", "shop.example.com"), (up,)),
        ("blog", ("blog.localhost", "blog.example.com"), ()),
    ]
