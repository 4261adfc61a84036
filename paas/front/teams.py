"""Team settings pages: the user's teams (and a form to make one), and one
team's members, with the owner's forms to add, re-role and remove them.
Each POST calls one service and comes back with a message."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from paas.accounts.members import (
    team_create_named,
    team_member_add,
    team_member_remove,
    team_member_set_role,
    teams_of,
)
from paas.accounts.models import Role, Team
from paas.accounts.services import ROLE_CAN, role_in_team, team_of_user
from paas.accounts.types import signed_in
from paas.core.errors import NotFound, PaasError, ValidationFailed


def team_or_404(request: HttpRequest, team_id: int) -> Team:
    try:
        return team_of_user(user=request.user, team_id=team_id)
    except NotFound as exc:
        raise Http404(exc.message) from None


@login_required
@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            team = team_create_named(owner=signed_in(request), name=request.POST.get("name", ""))
        except PaasError as exc:
            messages.error(request, exc.message)
            return redirect("teams")
        messages.success(request, f"Created {team.name}. Add its members below.")
        return redirect("team-detail", team_id=team.pk)
    return render(request, "front/teams.html", {"memberships": teams_of(user=request.user)})


@login_required
def team_detail(request: HttpRequest, team_id: int) -> HttpResponse:
    team = team_or_404(request, team_id)
    role = role_in_team(user=request.user, team_id=team.pk)
    context = {
        "team": team,
        "role": role,
        "can_manage": role in ROLE_CAN["manage"],
        "members": team.memberships.select_related("user").order_by("user__username"),
        "roles": Role.choices,
        "apps": team.apps.all(),
    }
    return render(request, "front/team_detail.html", context)


def _member_id(raw: str | None) -> int:
    if raw is None or not raw.isdigit():
        raise ValidationFailed("No member was chosen.")
    return int(raw)


def _act(request: HttpRequest, team: Team, action: str) -> str:
    user, post = signed_in(request), request.POST
    if action == "add":
        membership = team_member_add(
            actor=user, team=team, who=post.get("who", ""), role=post.get("role", "")
        )
        return f"Added {membership.user.username} as {membership.get_role_display().lower()}."
    if action == "role":
        membership = team_member_set_role(
            actor=user, team=team, membership_id=_member_id(post.get("member")),
            role=post.get("role", ""),
        )  # fmt: skip
        return f"{membership.user.username} is now {membership.get_role_display().lower()}."
    if action == "remove":
        username = team_member_remove(
            actor=user, team=team, membership_id=_member_id(post.get("member"))
        )
        return f"Removed {username} from {team.name}."
    raise NotFound("No such action.")


@login_required
@require_POST
def team_action(request: HttpRequest, team_id: int, action: str) -> HttpResponse:
    team = team_or_404(request, team_id)
    try:
        messages.success(request, _act(request, team, action))
    except NotFound as exc:
        if action not in {"add", "role", "remove"}:
            raise Http404(exc.message) from None
        messages.error(request, exc.message)
    except PaasError as exc:
        messages.error(request, exc.message)
    if role_in_team(user=request.user, team_id=team.pk) is None:
        return redirect("teams")  # they removed themselves
    return redirect("team-detail", team_id=team.pk)
