from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from paas.accounts.models import ApiToken, Membership, Role, Team
from paas.accounts.types import AnyUser
from paas.core.errors import NotFound, PermissionDenied

TOKEN_PREFIX = "paas_"
# What each role may do; checks name the action, never the role.
ROLE_CAN: dict[str, set[Role]] = {
    "view": {Role.OWNER, Role.MEMBER, Role.VIEWER},
    "deploy": {Role.OWNER, Role.MEMBER},
    "manage": {Role.OWNER},
}


@transaction.atomic
def team_ensure_personal(*, user: User) -> Team:
    team, created = Team.objects.get_or_create(
        personal_of=user, defaults={"name": f"{user.get_username()}'s team"}
    )
    if created:
        Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return team


@transaction.atomic
def team_create(*, owner: User, name: str) -> Team:
    team = Team.objects.create(name=name)
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    return team


def team_add_member(*, team: Team, user: User, role: Role) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        team=team, user=user, defaults={"role": role}
    )
    return membership


def role_in_team(*, user: AnyUser, team_id: int) -> Role | None:
    if not user.is_authenticated:
        return None
    role = (
        Membership.objects.filter(team_id=team_id, user_id=user.pk)
        .values_list("role", flat=True)
        .first()
    )
    return Role(role) if role else None


def require_role(*, user: AnyUser, team_id: int, action: str) -> Role:
    """Raise NotFound for outsiders (no leak that the object exists) and
    PermissionDenied for members whose role does not allow ``action``."""
    role = role_in_team(user=user, team_id=team_id)
    if role is None:
        raise NotFound("not found")
    if role not in ROLE_CAN[action]:
        raise PermissionDenied(f"your role ({role.label}) cannot {action} here")
    return role


def team_for_user(*, user: User, team_id: object, action: str) -> Team:
    """The team ``user`` asks to act in: ``team_id`` as a form or a JSON body
    sent it, or the personal team when none was sent. A team the user is not
    in is NotFound, exactly like a missing one; a role that does not allow
    ``action`` there is PermissionDenied."""
    if team_id is None or team_id == "":
        return team_ensure_personal(user=user)
    if isinstance(team_id, bool) or not str(team_id).isdigit():
        raise NotFound("No such team.")
    return team_of_user(user=user, team_id=int(str(team_id)), action=action)


def team_of_user(*, user: AnyUser, team_id: int, action: str = "view") -> Team:
    """The team, if ``user``'s role in it allows ``action``; a team the user
    is not in is NotFound, exactly like a missing one."""
    try:
        require_role(user=user, team_id=team_id, action=action)
    except NotFound:
        raise NotFound("No such team.") from None
    return Team.objects.get(pk=team_id)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """Returns the row and the raw token, which is never stored or shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=raw[:12], digest=_digest(raw))
    return token, raw


def api_tokens_of(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def api_token_of_user(*, user: User, token_id: int) -> ApiToken:
    """One of ``user``'s own tokens; anyone else's is NotFound, like a missing one."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise NotFound("No such token.")
    return token


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now())


def api_token_authenticate(*, raw: str) -> User | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=_digest(raw), revoked_at=None, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user


def role_allows(*, user: AnyUser, team_id: int, action: str) -> bool:
    """Whether to offer ``action`` on a page; the services check again."""
    return role_in_team(user=user, team_id=team_id) in ROLE_CAN[action]
