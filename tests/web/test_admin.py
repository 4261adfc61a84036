from __future__ import annotations

import pytest

from paas.applications.services import app_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/admin/auth/user/", "/admin/accounts/team/", "/admin/applications/app/",
             "/admin/builds/build/", "/admin/accounts/apitoken/", "/admin/hosts/host/"],
)  # fmt: skip
def test_the_admin_lists_every_kind_of_object(admin_client, admin_user, path):
    app_create(user=admin_user, team=admin_user.personal_team, name="listed")
    response = admin_client.get(path)
    assert response.status_code == 200


def test_the_admin_shows_apps_by_name(admin_client, admin_user):
    app_create(user=admin_user, team=admin_user.personal_team, name="listed")
    assert b"listed" in admin_client.get("/admin/applications/app/").content


def test_a_user_made_by_createsuperuser_gets_a_personal_team(admin_user):
    assert admin_user.personal_team.memberships.get().role == "owner"
