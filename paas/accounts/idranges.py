"""Each team's range of host uids/gids for its containers' user namespaces.

Team ``t`` gets host ids ``ID_RANGE_BASE + t.pk * 65536`` onwards (65536 of
them); container root of that team is the first. Range 0 (no team has pk 0)
is the agent's own default for requests that name no team. Keyed by the
primary key because the database never hands a key out twice (SQLite
AUTOINCREMENT, PostgreSQL sequences), so a deleted team's range, and any
file it left owned by those ids, never passes to a new team. The agent
refuses ranges below its ``PAAS_AGENT_USERNS_MIN_ID`` (the same base).
"""

from __future__ import annotations

from paas.accounts.models import Team
from paas.core.errors import Conflict
from runtime_agent.wire import ID_RANGE_BASE, ID_RANGE_SIZE, IdRange

MAX_TEAMS = (2**32 - 1 - ID_RANGE_BASE) // ID_RANGE_SIZE - 1


def team_id_range(*, team: Team) -> IdRange:
    """The id range the agent's create request carries for ``team``'s containers."""
    if not 0 < team.pk <= MAX_TEAMS:
        raise Conflict(f"team {team.pk} has no id range: at most {MAX_TEAMS} teams fit below 2^32")
    return IdRange(host_id=ID_RANGE_BASE + team.pk * ID_RANGE_SIZE)
