"""The dashboard: each app's current release, instances running out of
those meant to run, crashes, last deploy and URL; owners delete an app by
typing its name."""

from __future__ import annotations

from typing import Any

import pytest

from paas.applications.models import App, AuditEntry
from tests.web.pages.support import deployed_app, host, messages_of, post_forms

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(alice: Any) -> App:
    return deployed_app(alice, "shop", host(), ["running", "crashed"])


def test_alice_sees_release_instances_crashes_last_deploy_and_url(client: Any, alice: Any,
                                                                  shop: App) -> None:  # fmt: skip
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "v1" in page
    assert "1/2 running" in page
    assert "1 crashed" in page
    assert 'app-status">crashed<' in page
    assert 'href="http://shop.localhost:8080/"' in page
    assert "ago</time>" in page  # the last deploy's age
    assert "/apps/shop/deploy/delete" in post_forms(page)


def test_an_app_never_deployed_says_so(client: Any, alice: Any) -> None:
    from paas.applications.services import app_create

    app_create(user=alice, team=alice.personal_team, name="fresh")
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "none yet" in page and "never" in page
    assert 'app-status">not deployed<' in page


def test_a_new_user_gets_a_clear_empty_state(client: Any, bob: Any) -> None:
    client.force_login(bob)
    page = client.get("/").content.decode()
    assert "No apps yet" in page


def test_bob_does_not_see_alices_apps(client: Any, bob: Any, shop: App) -> None:
    client.force_login(bob)
    assert "shop" not in client.get("/").content.decode()


def test_a_viewer_sees_the_app_but_no_delete(client: Any, carol_viewer_in_alices_team: Any,
                                             shop: App) -> None:  # fmt: skip
    client.force_login(carol_viewer_in_alices_team)
    page = client.get("/").content.decode()
    assert "1/2 running" in page
    assert "/apps/shop/deploy/delete" not in post_forms(page)
    response = client.post("/apps/shop/deploy/delete", {"confirm": "shop"}, follow=True)
    assert any("cannot manage" in m for m in messages_of(response))
    assert not AuditEntry.objects.filter(action="app.delete").exists()


def test_delete_needs_the_apps_name_typed(client: Any, alice: Any, shop: App) -> None:
    client.force_login(alice)
    wrong = client.post("/apps/shop/deploy/delete", {"confirm": "shp"}, follow=True)
    assert any("Type the app's name (shop)" in m for m in messages_of(wrong))
    assert not AuditEntry.objects.filter(action="app.delete").exists()
    right = client.post("/apps/shop/deploy/delete", {"confirm": "shop"}, follow=True)
    assert right.redirect_chain[-1][0] == "/"
    assert any("Deleting shop" in m for m in messages_of(right))
    entry = AuditEntry.objects.get(action="app.delete")
    assert (entry.team_id, entry.target, entry.actor_name) == (alice.personal_team.pk, "shop",
                                                               "alice")  # fmt: skip


@pytest.mark.parametrize(
    ("states", "release_state", "status"),
    [
        (["running", "running"], "current", "running"),
        (["running", "starting"], "current", "starting"),
        (["running", "backoff"], "current", "crashed"),
        ([], "current", "stopped"),
        (["running"], "deploying", "deploying"),
    ],
)
def test_each_app_has_a_one_word_status(client: Any, alice: Any, states: list[str],
                                        release_state: str, status: str) -> None:  # fmt: skip
    app = deployed_app(alice, "web", host(), states)
    if release_state != "current":
        app.releases.create(number=2, image="reg/web@sha256:bb", cause="build",
                            state=release_state)  # fmt: skip
    client.force_login(alice)
    assert f'app-status">{status}<' in client.get("/").content.decode()
