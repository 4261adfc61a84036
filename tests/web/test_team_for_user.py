"""The team a user may act in, as the pages and the API both ask for it:
alice's own team by default, a team she is in by id, never bob's."""

from __future__ import annotations

import pytest

from paas.accounts.services import team_create, team_for_user
from paas.core.errors import NotFound, PermissionDenied

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("sent", [None, ""])
def test_it_gives_alice_her_personal_team_when_none_is_named(alice, sent):
    team = team_for_user(user=alice, team_id=sent, action="deploy")
    assert team == alice.personal_team


@pytest.mark.parametrize("as_sent", [int, str])
def test_it_gives_alice_a_team_she_owns_by_its_id(alice, as_sent):
    shared = team_create(owner=alice, name="alice and friends")
    assert team_for_user(user=alice, team_id=as_sent(shared.pk), action="deploy") == shared


def test_bob_gets_not_found_for_alices_team_like_for_a_missing_one(alice, bob):
    with pytest.raises(NotFound) as alices:
        team_for_user(user=bob, team_id=alice.personal_team.pk, action="view")
    with pytest.raises(NotFound) as missing:
        team_for_user(user=bob, team_id=10**9, action="view")
    assert alices.value.message == missing.value.message == "No such team."


def test_carol_the_viewer_may_look_in_alices_team_but_not_deploy(
    alice, carol_viewer_in_alices_team
):
    carol = carol_viewer_in_alices_team
    assert team_for_user(user=carol, team_id=alice.personal_team.pk, action="view")
    with pytest.raises(PermissionDenied, match="Viewer"):
        team_for_user(user=carol, team_id=alice.personal_team.pk, action="deploy")


@pytest.mark.parametrize("sent", ["abc", "1.5", "-1", True, [1], {"id": 1}])
def test_it_refuses_a_team_id_that_is_not_a_number(alice, sent):
    with pytest.raises(NotFound, match="No such team"):
        team_for_user(user=alice, team_id=sent, action="view")
