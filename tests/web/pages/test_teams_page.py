"""Team settings: make a team, add members by username or email, change
their roles and remove them; owners only, and never the last owner. Another
team's page is a 404; a viewer sees members but no form."""

from __future__ import annotations

from typing import Any

import pytest

from paas.accounts.models import Membership, Role, Team
from paas.accounts.services import team_add_member
from paas.applications.models import AuditEntry
from tests.web.pages.support import messages_of, post_forms

pytestmark = pytest.mark.django_db


@pytest.fixture
def dave(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(
        username="dave", password="dave-pw-123", email="Dave@Example.com"
    )


@pytest.fixture
def web_team(client: Any, alice: Any) -> Team:
    client.force_login(alice)
    response = client.post("/teams/", {"name": "  Web   team "})
    team = Team.objects.get(name="Web team")
    assert response["Location"] == f"/teams/{team.pk}/"
    return team


def _member(team: Team, username: str) -> Membership:
    return Membership.objects.get(team=team, user__username=username)


def test_alice_makes_a_team_and_owns_it(client: Any, alice: Any, web_team: Team) -> None:
    assert _member(web_team, "alice").role == Role.OWNER
    assert AuditEntry.objects.get(action="team.create").team_id == web_team.pk
    page = client.get("/teams/").content.decode()
    assert "Web team" in page and "(personal)" in page
    assert f"/teams/{web_team.pk}/" in page


def test_a_team_needs_a_name(client: Any, alice: Any) -> None:
    client.force_login(alice)
    response = client.post("/teams/", {"name": "   "}, follow=True)
    assert any("A team name is 1 to 100 characters" in m for m in messages_of(response))


def test_members_are_added_by_username_or_email(client: Any, web_team: Team, dave: Any,
                                               bob: Any) -> None:  # fmt: skip
    url = f"/teams/{web_team.pk}/members/"
    added = client.post(url + "add", {"who": "dave@example.COM", "role": "viewer"}, follow=True)
    assert any("Added dave as viewer" in m for m in messages_of(added))
    client.post(url + "add", {"who": "bob", "role": "member"})
    assert _member(web_team, "dave").role == Role.VIEWER
    assert _member(web_team, "bob").role == Role.MEMBER
    again = client.post(url + "add", {"who": "bob", "role": "owner"}, follow=True)
    assert any("bob is already in Web team" in m for m in messages_of(again))
    nobody = client.post(url + "add", {"who": "zed@example.com", "role": "member"}, follow=True)
    assert any("No account with the username or email" in m for m in messages_of(nobody))
    bad_role = client.post(url + "add", {"who": "carol", "role": "god"}, follow=True)
    assert any("A role is one of owner, member, viewer" in m for m in messages_of(bad_role))
    entry = AuditEntry.objects.filter(action="team.member_add").first()
    assert entry is not None and entry.team_id == web_team.pk


def test_roles_change_but_the_last_owner_stays(client: Any, web_team: Team, dave: Any) -> None:
    url = f"/teams/{web_team.pk}/members/"
    alice_id = _member(web_team, "alice").pk
    demoted = client.post(url + "role", {"member": alice_id, "role": "member"}, follow=True)
    assert any("alice is the last owner of Web team" in m for m in messages_of(demoted))
    removed = client.post(url + "remove", {"member": alice_id}, follow=True)
    assert any("make someone else an owner before you remove" in m for m in messages_of(removed))
    assert _member(web_team, "alice").role == Role.OWNER

    team_add_member(team=web_team, user=dave, role=Role.MEMBER)
    promoted = client.post(url + "role", {"member": _member(web_team, "dave").pk, "role": "owner"},
                           follow=True)  # fmt: skip
    assert any("dave is now owner" in m for m in messages_of(promoted))
    client.post(url + "role", {"member": alice_id, "role": "viewer"})
    assert _member(web_team, "alice").role == Role.VIEWER
    assert AuditEntry.objects.filter(action="team.member_role", detail="owner -> viewer").exists()


def test_an_owner_removes_a_member_and_may_leave(client: Any, web_team: Team, dave: Any) -> None:
    url = f"/teams/{web_team.pk}/members/"
    team_add_member(team=web_team, user=dave, role=Role.OWNER)
    gone = client.post(url + "remove", {"member": _member(web_team, "dave").pk}, follow=True)
    assert any("Removed dave from Web team" in m for m in messages_of(gone))
    team_add_member(team=web_team, user=dave, role=Role.OWNER)
    left = client.post(url + "remove", {"member": _member(web_team, "alice").pk})
    assert left["Location"] == "/teams/"
    assert client.get(f"/teams/{web_team.pk}/").status_code == 404


def test_a_member_of_another_team_cannot_be_touched(client: Any, alice: Any, web_team: Team,
                                                   bob: Any) -> None:  # fmt: skip
    bobs = Membership.objects.get(team=bob.personal_team)
    response = client.post(f"/teams/{web_team.pk}/members/remove", {"member": bobs.pk},
                           follow=True)  # fmt: skip
    assert any("No such member in this team" in m for m in messages_of(response))
    assert Membership.objects.filter(pk=bobs.pk).exists()


def test_another_teams_page_and_actions_are_404(client: Any, bob: Any, web_team: Team) -> None:
    client.force_login(bob)
    assert client.get(f"/teams/{web_team.pk}/").status_code == 404
    assert client.get(f"/teams/{web_team.pk}/activity/").status_code == 404
    response = client.post(f"/teams/{web_team.pk}/members/add", {"who": "bob", "role": "owner"})
    assert response.status_code == 404
    assert not Membership.objects.filter(team=web_team, user=bob).exists()
    assert client.get("/teams/999999/").status_code == 404


def test_a_viewer_sees_members_but_no_forms_and_is_refused(
    client: Any, alice: Any, carol_viewer_in_alices_team: Any, bob: Any
) -> None:
    team = alice.personal_team
    client.force_login(carol_viewer_in_alices_team)
    page = client.get(f"/teams/{team.pk}/").content.decode()
    assert "alice" in page and "carol" in page
    assert post_forms(page) == []
    assert "Only the team's owners can add" in page
    response = client.post(f"/teams/{team.pk}/members/add", {"who": "bob", "role": "owner"},
                           follow=True)  # fmt: skip
    assert any("Only the owners of alice's team" in m for m in messages_of(response))
    assert not Membership.objects.filter(team=team, user=bob).exists()
    carol = _member(team, "carol")
    client.post(f"/teams/{team.pk}/members/role", {"member": carol.pk, "role": "owner"})
    assert _member(team, "carol").role == Role.VIEWER


def test_nobody_is_demoted_or_removed_from_their_personal_team(
    client: Any, alice: Any, dave: Any
) -> None:
    team = alice.personal_team
    team_add_member(team=team, user=dave, role=Role.OWNER)
    client.force_login(dave)
    alices = _member(team, "alice")
    url = f"/teams/{team.pk}/members/"
    demoted = client.post(url + "role", {"member": alices.pk, "role": "viewer"}, follow=True)
    assert any("alice's team is alice's personal team" in m for m in messages_of(demoted))
    removed = client.post(url + "remove", {"member": alices.pk}, follow=True)
    assert any("you cannot remove them" in m for m in messages_of(removed))
    assert _member(team, "alice").role == Role.OWNER
    assert client.post(url + "remove", {"member": _member(team, "dave").pk}).status_code == 302
    assert not Membership.objects.filter(team=team, user=dave).exists()
