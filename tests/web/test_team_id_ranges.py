"""Every team's containers run in their own range of host uids."""

from __future__ import annotations

import pytest

from paas.accounts.idranges import team_id_range
from paas.accounts.services import team_create
from runtime_agent.wire import ID_RANGE_BASE, ID_RANGE_SIZE

pytestmark = pytest.mark.django_db


def test_two_teams_get_disjoint_ranges_above_the_agents_default(alice, bob):
    ranges = [team_id_range(team=u.personal_team) for u in (alice, bob)]
    ranges.append(team_id_range(team=team_create(owner=alice, name="alice and friends")))
    spans = [range(r.host_id, r.host_id + r.size) for r in ranges]
    for i, span in enumerate(spans):
        assert span.start >= ID_RANGE_BASE + ID_RANGE_SIZE  # range 0 is the agent's default
        assert span.start % ID_RANGE_SIZE == 0 and len(span) == ID_RANGE_SIZE
        assert all(not set(span) & set(other) for other in spans[i + 1 :])


def test_a_teams_range_does_not_change(alice):
    team = alice.personal_team
    assert team_id_range(team=team) == team_id_range(team=team)
