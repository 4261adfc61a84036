"""The app page's deploy panel: releases with rollback, processes with
scale, config vars masked for all but owners; its forms call the services."""

from __future__ import annotations

from typing import Any

import pytest

from paas.accounts.models import Role
from paas.accounts.services import team_add_member
from paas.applications.models import ConfigVar, Release, ReleaseState
from paas.applications.releases import _ensure_formation
from paas.applications.services import app_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app(alice: Any) -> Any:
    app = app_create(user=alice, team=alice.personal_team, name="paged")
    Release.objects.create(app=app, number=1, image="reg/paged@sha256:aa", cause="build",
                           state=ReleaseState.CURRENT, description="Build #1")  # fmt: skip
    _ensure_formation(app, {})
    ConfigVar.objects.create(app=app, key="API_KEY", value="hunter2")
    return app


def test_the_owner_sees_releases_processes_and_config_values(client: Any, alice: Any,
                                                             app: Any) -> None:  # fmt: skip
    client.force_login(alice)
    page = client.get("/apps/paged/").content.decode()
    assert "v1" in page and "Build #1" in page and "Current" in page
    assert "<code>web</code>" in page
    assert "hunter2" in page and "API_KEY" in page


def test_a_member_sees_config_keys_but_not_values(client: Any, alice: Any, app: Any,
                                                  django_user_model: Any) -> None:  # fmt: skip
    dave = django_user_model.objects.create_user(username="dave", password="dave-pw-123")
    team_add_member(team=alice.personal_team, user=dave, role=Role.MEMBER)
    client.force_login(dave)
    page = client.get("/apps/paged/").content.decode()
    assert "API_KEY" in page and "hunter2" not in page


def test_the_config_form_makes_a_release_and_the_rollback_button_another(
    client: Any, alice: Any, app: Any
) -> None:
    client.force_login(alice)
    response = client.post("/apps/paged/deploy/set", {"key": "MODE", "value": "fast"})
    assert response.status_code == 302
    assert Release.objects.get(app=app, number=2).config == {"API_KEY": "hunter2", "MODE": "fast"}
    client.post("/apps/paged/deploy/rollback", {"number": "1"})
    assert Release.objects.get(app=app, number=3).description == "Rollback to v1"
    bad = client.post("/apps/paged/deploy/set", {"key": "9x", "value": "y"}, follow=True)
    assert "not a valid variable name" in bad.content.decode()


def test_a_viewer_gets_no_buttons_and_is_refused(client: Any, carol_viewer_in_alices_team: Any,
                                                app: Any) -> None:  # fmt: skip
    client.force_login(carol_viewer_in_alices_team)
    page = client.get("/apps/paged/").content.decode()
    assert "Roll back" not in page and "hunter2" not in page
    response = client.post("/apps/paged/deploy/scale", {"process_type": "web", "count": "3"},
                           follow=True)  # fmt: skip
    assert "cannot deploy" in response.content.decode()
    assert app.formation.get(process_type="web").count == 1


def test_registry_credentials_are_saved_listed_without_password_and_forgotten(
    client: Any, alice: Any, carol_viewer_in_alices_team: Any, app: Any
) -> None:
    client.force_login(alice)
    saved = client.post("/apps/paged/deploy/registry-credential",
                        {"registry": "reg.example:5000", "username": "bob",
                         "password": "pa55-w0rd-xyz"}, follow=True)  # fmt: skip
    page = saved.content.decode()
    assert "Saved the credential for reg.example:5000 (user bob)" in page
    assert "<code>reg.example:5000</code>" in page and "pa55-w0rd-xyz" not in page

    client.force_login(carol_viewer_in_alices_team)
    refused = client.post("/apps/paged/deploy/registry-forget",
                          {"registry": "reg.example:5000"}, follow=True)  # fmt: skip
    assert "cannot deploy" in refused.content.decode()
    assert app.registry_credentials.count() == 1

    client.force_login(alice)
    client.post("/apps/paged/deploy/registry-forget", {"registry": "reg.example:5000"})
    assert app.registry_credentials.count() == 0
