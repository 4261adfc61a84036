"""The audit log: who did what to which app, and how it ended."""

from __future__ import annotations

from django.contrib.auth.models import User

from paas.accounts.models import Team
from paas.applications.models import App, AuditEntry, AuditResult


def audit_record(
    *,
    actor: User | None,
    app: App | None,
    action: str,
    target: str = "",
    result: AuditResult = AuditResult.OK,
    detail: str = "",
    team: Team | None = None,
) -> AuditEntry:
    """Record one action. ``detail`` must never hold a config value: callers
    name keys, not values. An app's entry belongs to the app's team unless
    ``team`` says otherwise."""
    return AuditEntry.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor else "",
        app=app,
        team_id=team.pk if team is not None else (app.team_id if app is not None else None),
        action=action,
        target=target[:200],
        result=result,
        detail=detail,
    )
