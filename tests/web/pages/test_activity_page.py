"""Audit log pages: per app and per team, who, what, when, result, newest
first, 50 to a page; another team's are 404."""

from __future__ import annotations

from typing import Any

import pytest

from paas.accounts.members import team_member_add
from paas.applications.audit import audit_record
from paas.applications.models import AuditResult
from paas.applications.services import app_create
from paas.hosts.app_delete import app_delete_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(alice: Any) -> Any:
    return app_create(user=alice, team=alice.personal_team, name="shop")


def test_the_app_activity_is_paged_newest_first(client: Any, alice: Any, shop: Any) -> None:
    for n in range(120):
        audit_record(actor=alice, app=shop, action="app.scale", target=f"web={n}")
    audit_record(actor=None, app=shop, action="deploy.release", target="v9",
                 result=AuditResult.FAILED, detail="web.1 exited with code 3")  # fmt: skip
    client.force_login(alice)
    first = client.get("/apps/shop/activity/").content.decode()
    assert "Page 1 of 3 (121 entries)" in first
    assert first.index("deploy.release") < first.index("web=119")  # newest first
    assert "web=70" not in first and "web=71" in first
    assert "web.1 exited with code 3" in first and "Failed" in first and "platform" in first
    last = client.get("/apps/shop/activity/?page=3").content.decode()
    assert "web=0<" in last and "web=20<" in last and "web=21<" not in last
    assert 'rel="prev"' in last and 'rel="next"' not in last
    assert "Page 3 of 3" in client.get("/apps/shop/activity/?page=99").content.decode()


def test_the_team_activity_has_members_and_deleted_apps(client: Any, alice: Any, bob: Any,
                                                        shop: Any) -> None:  # fmt: skip
    team = alice.personal_team
    team_member_add(actor=alice, team=team, who="bob", role="viewer")
    app_delete_request(user=alice, app=shop, confirm="shop")
    client.force_login(alice)
    page = client.get(f"/teams/{team.pk}/activity/").content.decode()
    assert "team.member_add" in page and "bob" in page
    assert "app.delete" in page


def test_no_activity_is_a_clear_empty_state(client: Any, alice: Any, shop: Any) -> None:
    client.force_login(alice)
    assert "Nothing recorded yet" in client.get("/apps/shop/activity/").content.decode()


def test_other_teams_activity_is_404(client: Any, alice: Any, bob: Any, shop: Any) -> None:
    audit_record(actor=alice, app=shop, action="app.scale", target="web=2")
    client.force_login(bob)
    assert client.get("/apps/shop/activity/").status_code == 404
    assert client.get(f"/teams/{alice.personal_team.pk}/activity/").status_code == 404
    assert client.get("/apps/nope/activity/").status_code == 404


def test_a_viewer_reads_the_activity(client: Any, carol_viewer_in_alices_team: Any,
                                     alice: Any, shop: Any) -> None:  # fmt: skip
    audit_record(actor=alice, app=shop, action="app.scale", target="web=2")
    client.force_login(carol_viewer_in_alices_team)
    assert "web=2" in client.get("/apps/shop/activity/").content.decode()
