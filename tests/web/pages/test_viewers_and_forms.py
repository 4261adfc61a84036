"""Viewers watch but do not act: no action form on any page they can see,
and the server refuses the action anyway. Every form needs its CSRF token,
and a POST from another origin is refused even with one."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from paas.accounts.models import Team
from paas.builds.buildvars import build_arg_set, build_secret_set
from paas.builds.models import Build, BuildArg, BuildState
from paas.router.domains import domain_add
from paas.router.models import Domain
from tests.web.pages.support import deployed_app, host, messages_of, post_forms

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(alice: Any) -> Any:
    app = deployed_app(alice, "shop", host(), ["running"])
    build_arg_set(app=app, name="VERSION", value="1")
    build_secret_set(app=app, name="token", value="s3cret")
    domain_add(user=alice, app=app, hostname="www.example.com")
    return app


@pytest.fixture
def running_build(shop: Any) -> Build:
    return Build.objects.create(app=shop, number=1, state=BuildState.BUILDING,
                                archive_name="a.zip", archive_path="")  # fmt: skip


def test_the_owner_gets_every_form(client: Any, alice: Any, shop: Any,
                                   running_build: Build) -> None:  # fmt: skip
    client.force_login(alice)
    app_forms = post_forms(client.get("/apps/shop/").content.decode())
    assert "/apps/shop/builds" in app_forms and "/apps/shop/build-settings" in app_forms
    assert "/apps/shop/deploy/scale" in app_forms and "/apps/shop/deploy/delete" in app_forms
    build_page = client.get(f"/apps/shop/builds/{running_build.pk}/").content.decode()
    assert f"/apps/shop/builds/{running_build.pk}/cancel" in post_forms(build_page)
    assert post_forms(client.get("/apps/shop/domains/").content.decode())


def test_a_viewer_sees_every_page_without_a_single_action_form(
    client: Any, carol_viewer_in_alices_team: Any, shop: Any, running_build: Build
) -> None:
    client.force_login(carol_viewer_in_alices_team)
    team = Team.objects.get(apps=shop)
    pages = [
        "/apps/shop/",
        f"/apps/shop/builds/{running_build.pk}/",
        "/apps/shop/domains/",
        "/apps/shop/activity/",
        f"/teams/{team.pk}/",
        f"/teams/{team.pk}/activity/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert post_forms(response.content.decode()) == [], url
    page = client.get("/apps/shop/").content.decode()
    assert "VERSION" in page and "token" in page and "s3cret" not in page
    assert "www.example.com" in client.get("/apps/shop/domains/").content.decode()
    dashboard_forms = post_forms(client.get("/").content.decode())
    assert dashboard_forms == ["/apps/new"]  # her own team's: she owns it


def test_the_server_refuses_a_viewers_actions(client: Any, carol_viewer_in_alices_team: Any,
                                              shop: Any, running_build: Build) -> None:  # fmt: skip
    client.force_login(carol_viewer_in_alices_team)
    refused = [
        client.post("/apps/shop/build-settings", {"kind": "arg", "name": "X", "value": "1"},
                    follow=True),
        client.post("/apps/shop/domains/", {"action": "add", "hostname": "evil.example.com"},
                    follow=True),
        client.post("/apps/shop/domains/", {"action": "remove", "hostname": "www.example.com"},
                    follow=True),
        client.post(f"/apps/shop/builds/{running_build.pk}/cancel", follow=True),
        client.post("/apps/shop/deploy/instance", {"instance": "shop.v1.web.1", "action": "kill"},
                    follow=True),
        client.post("/apps/shop/builds", {}, follow=True),
    ]  # fmt: skip
    for response in refused:
        assert response.status_code in {200, 403}
        if response.status_code == 200:
            assert any("cannot deploy" in m for m in messages_of(response)), messages_of(response)
    assert not BuildArg.objects.filter(name="X").exists()
    assert list(Domain.objects.values_list("hostname", flat=True)) == ["www.example.com"]
    assert Build.objects.get(pk=running_build.pk).state == BuildState.BUILDING
    assert Build.objects.count() == 1


def test_a_form_without_its_csrf_token_is_refused(alice: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/teams/", {"name": "Sneaky"}).status_code == 403
    assert not Team.objects.filter(name="Sneaky").exists()


def test_a_post_from_another_origin_is_refused_even_with_a_token(alice: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    strict.get("/teams/")
    token = strict.cookies["csrftoken"].value
    foreign = strict.post("/teams/", {"name": "Cross", "csrfmiddlewaretoken": token},
                          HTTP_ORIGIN="http://evil.example")  # fmt: skip
    assert foreign.status_code == 403
    same = strict.post("/teams/", {"name": "Same", "csrfmiddlewaretoken": token},
                       HTTP_ORIGIN="http://testserver")  # fmt: skip
    assert same.status_code == 302
    assert list(Team.objects.filter(name__in=["Cross", "Same"]).values_list("name", flat=True)) == [
        "Same"
    ]
