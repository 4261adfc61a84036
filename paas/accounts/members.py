"""Team settings: making teams, adding members by username or email,
changing roles, removing members. Only owners act; a team always keeps at
least one owner, so it can never be left without someone able to manage it.
Each action lands in the team's audit log."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from paas.accounts.models import Membership, Role, Team
from paas.accounts.services import require_role, team_create
from paas.accounts.types import AnyUser
from paas.applications.audit import audit_record
from paas.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed

TEAM_NAME_MAX = 100


def teams_of(*, user: AnyUser) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user_id=user.pk).select_related("team").order_by("team__name")


def _require_owner(actor: User, team: Team) -> None:
    try:
        require_role(user=actor, team_id=team.pk, action="manage")
    except PermissionDenied:
        raise PermissionDenied(f"Only the owners of {team.name} can manage its members.") from None


def team_create_named(*, owner: User, name: str) -> Team:
    name = " ".join(name.split())
    if not name or len(name) > TEAM_NAME_MAX:
        raise ValidationFailed(f"A team name is 1 to {TEAM_NAME_MAX} characters.", field="name")
    with transaction.atomic():
        team = team_create(owner=owner, name=name)
        audit_record(actor=owner, app=None, team=team, action="team.create", target=name)
    return team


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise ValidationFailed(f"A role is one of {choices}.", field="role") from None


def _find_user(who: str) -> User:
    who = who.strip()
    if not who:
        raise ValidationFailed("Give a username or an email address.", field="who")
    by_name = User.objects.filter(username=who, is_active=True).first()
    if by_name is not None:
        return by_name
    if "@" in who:
        by_email = list(User.objects.filter(email__iexact=who, is_active=True)[:2])
        if len(by_email) == 1:
            return by_email[0]
        if by_email:
            raise ValidationFailed(
                f"More than one account uses {who}: add the person by username.", field="who"
            )
    raise NotFound(f"No account with the username or email {who!r}.", field="who")


def team_member_add(*, actor: User, team: Team, who: str, role: str) -> Membership:
    _require_owner(actor, team)
    new_role = _role(role)
    user = _find_user(who)
    with transaction.atomic():
        if Membership.objects.filter(team=team, user=user).exists():
            raise Conflict(
                f"{user.username} is already in {team.name}: change their role instead.",
                field="who",
            )
        membership = Membership.objects.create(team=team, user=user, role=new_role)
        audit_record(actor=actor, app=None, team=team, action="team.member_add",
                     target=user.username, detail=new_role.value)  # fmt: skip
    return membership


def _membership(team: Team, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_for_update()
        .filter(pk=membership_id, team=team)
        .select_related("user")
        .first()
    )
    if membership is None:
        raise NotFound("No such member in this team.")
    return membership


def _refuse_losing_the_last_owner(team: Team, membership: Membership, verb: str) -> None:
    if membership.role != Role.OWNER:
        return
    if team.personal_of_id == membership.user_id:
        # Everyone keeps a team of their own to make apps in.
        raise Conflict(
            f"{team.name} is {membership.user.username}'s personal team: "
            f"they stay its owner, so you cannot {verb} them.",
        )
    # Locked, so two owners demoting each other at once cannot both pass.
    owners = list(
        Membership.objects.select_for_update().filter(team=team, role=Role.OWNER).values("pk")
    )
    if len(owners) <= 1:
        raise Conflict(
            f"{membership.user.username} is the last owner of {team.name}: "
            f"make someone else an owner before you {verb} them.",
        )


def team_member_set_role(*, actor: User, team: Team, membership_id: int, role: str) -> Membership:
    _require_owner(actor, team)
    new_role = _role(role)
    with transaction.atomic():
        membership = _membership(team, membership_id)
        if membership.role == new_role:
            return membership
        if new_role != Role.OWNER:
            _refuse_losing_the_last_owner(team, membership, "demote")
        old = membership.role
        membership.role = new_role
        membership.save(update_fields=["role"])
        audit_record(
            actor=actor,
            app=None,
            team=team,
            action="team.member_role",
            target=membership.user.username,
            detail=f"{old} -> {new_role.value}",
        )
    return membership


def team_member_remove(*, actor: User, team: Team, membership_id: int) -> str:
    """Remove a member; returns their username."""
    _require_owner(actor, team)
    with transaction.atomic():
        membership = _membership(team, membership_id)
        _refuse_losing_the_last_owner(team, membership, "remove")
        username = membership.user.username
        membership.delete()
        audit_record(actor=actor, app=None, team=team, action="team.member_remove",
                     target=username)  # fmt: skip
    return username
