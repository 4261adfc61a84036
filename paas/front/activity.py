"""Audit log pages, one per app and one per team: who, what, when, result,
newest first, paged."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from paas.applications.models import AuditEntry
from paas.applications.selectors import app_for_user
from paas.core.errors import NotFound
from paas.front.teams import team_or_404

PAGE_SIZE = 50


def _render(
    request: HttpRequest, entries: QuerySet[AuditEntry], context: dict[str, object]
) -> HttpResponse:
    page = Paginator(entries.select_related("app"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "front/activity.html", {**context, "page": page})


@login_required
def app_activity(request: HttpRequest, name: str) -> HttpResponse:
    try:
        app = app_for_user(user=request.user, name=name)
    except NotFound as exc:
        raise Http404(exc.message) from None
    return _render(
        request, app.audit_entries.all(), {"app": app, "title": f"Activity of {app.name}"}
    )


@login_required
def team_activity(request: HttpRequest, team_id: int) -> HttpResponse:
    team = team_or_404(request, team_id)
    return _render(
        request, team.audit_entries.all(), {"team": team, "title": f"Activity of {team.name}"}
    )
