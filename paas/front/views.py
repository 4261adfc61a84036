"""HTML pages: thin, they translate a request into a service call."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from paas.accounts.models import ApiToken, Membership
from paas.accounts.services import (
    ROLE_CAN,
    api_token_create,
    api_token_revoke,
    role_allows,
    team_ensure_personal,
    team_for_user,
)
from paas.accounts.types import signed_in
from paas.applications.selectors import app_for_user
from paas.applications.services import app_create
from paas.builds.buildvars import (
    build_arg_delete,
    build_arg_set,
    build_args_of,
    build_secret_delete,
    build_secret_names,
    build_secret_set,
)
from paas.builds.selectors import build_for_user, build_log_since
from paas.builds.services import build_accept_upload, build_cancel
from paas.core.errors import NotFound, PaasError
from paas.hosts.live import BUILDS_SHOWN
from paas.hosts.selectors import app_status, app_summaries


def _or_404(fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except NotFound as exc:
        raise Http404(exc.message) from None


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    team_ensure_personal(user=signed_in(request))
    teams = Membership.objects.filter(user=signed_in(request)).select_related("team")
    roles = {m.team_id: m.role for m in teams}
    rows = [
        {
            "app": app,
            "status": app_status(app),
            "can_manage": roles.get(app.team_id) in ROLE_CAN["manage"],
        }
        for app in app_summaries(user=request.user)
    ]
    context = {
        "rows": rows,
        "memberships": [m for m in teams if m.role in ROLE_CAN["deploy"]],
        "router_port": settings.PAAS_ROUTER_PORT,
    }
    return render(request, "front/dashboard.html", context)


@login_required
@require_POST
def app_new(request: HttpRequest) -> HttpResponse:
    user = signed_in(request)
    team = _or_404(team_for_user, user=user, team_id=request.POST.get("team"), action="deploy")
    try:
        app = app_create(user=user, team=team, name=request.POST.get("name", "").strip())
    except PaasError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard")
    messages.success(request, f"Created {app.name}.")
    return redirect("app-detail", name=app.name)


@login_required
def app_detail(request: HttpRequest, name: str) -> HttpResponse:
    app = _or_404(app_for_user, user=request.user, name=name)
    builds = app.builds.all()[:BUILDS_SHOWN]
    context = {
        "app": app,
        "builds": builds,
        "build_args": build_args_of(app=app),
        "build_secrets": build_secret_names(app=app),
        "can_deploy": role_allows(user=request.user, team_id=app.team_id, action="deploy"),
    }
    return render(request, "front/app_detail.html", context)


@sensitive_post_parameters("value")
@login_required
@require_POST
def build_settings(request: HttpRequest, name: str) -> HttpResponse:
    """Set or delete a build argument or secret (a secret's value is
    write-only: the page lists names only)."""
    post = request.POST
    key, kind, delete = post.get("name", "").strip(), post.get("kind"), "delete" in post
    try:
        app = _or_404(app_for_user, user=request.user, name=name, action="deploy")
        if kind == "arg" and delete:
            build_arg_delete(app=app, name=key)
        elif kind == "arg":
            build_arg_set(app=app, name=key, value=post.get("value", ""))
        elif kind == "secret" and delete:
            build_secret_delete(app=app, name=key)
        elif kind == "secret":
            build_secret_set(app=app, name=key, value=post.get("value", ""))
        else:
            raise PaasError("Unknown kind of build setting.")
    except PaasError as exc:
        messages.error(request, exc.message)
    else:
        what = "build argument" if kind == "arg" else "build secret"
        messages.success(request, f"{'Deleted' if delete else 'Saved'} {what} {key}.")
    return redirect("app-detail", name=name)


@login_required
@require_POST
def build_upload(request: HttpRequest, name: str) -> HttpResponse:
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        build = _or_404(
            build_accept_upload,
            user=signed_in(request),
            app_name=name,
            content_length=request.META.get("CONTENT_LENGTH"),
            read_source=lambda: request.FILES.get("source"),
        )
    except PaasError as exc:
        if wants_json:
            return JsonResponse(exc.as_dict(), status=exc.status)
        messages.error(request, exc.message)
        return redirect("app-detail", name=name)
    url = reverse("build-detail", kwargs={"name": name, "build_id": build.pk})
    if wants_json:
        return JsonResponse(
            {"build": str(build.pk), "number": build.number, "url": url}, status=201
        )
    return redirect(url)


@login_required
def build_detail(request: HttpRequest, name: str, build_id: str) -> HttpResponse:
    build = _or_404(build_for_user, user=request.user, build_id=build_id)
    if build.app.name != name:
        raise Http404("No such build.")
    lines = build_log_since(str(build.pk), 0)
    can_deploy = role_allows(user=request.user, team_id=build.app.team_id, action="deploy")
    context = {"build": build, "lines": lines, "can_deploy": can_deploy}
    return render(request, "front/build_detail.html", context)


@login_required
@require_POST
def build_cancel_page(request: HttpRequest, name: str, build_id: str) -> HttpResponse:
    try:
        build = _or_404(build_for_user, user=request.user, build_id=build_id, action="deploy")
    except PaasError as exc:
        messages.error(request, exc.message)
        return redirect("build-detail", name=name, build_id=build_id)
    if build.app.name != name:
        raise Http404("No such build.")
    if build_cancel(build=build, user=signed_in(request)):
        messages.success(request, f"Cancelled build #{build.number}.")
    else:
        messages.error(request, f"Build #{build.number} has already ended.")
    return redirect("build-detail", name=name, build_id=build.pk)


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    created = None
    if request.method == "POST":
        if "revoke" in request.POST:
            token = get_object_or_404(ApiToken, pk=request.POST["revoke"], user=signed_in(request))
            api_token_revoke(token=token)
            messages.success(request, f"Revoked {token.name}.")
            return redirect("tokens")
        name = request.POST.get("name", "").strip()[:100] or "token"
        _, created = api_token_create(user=signed_in(request), name=name)
    listing = ApiToken.objects.filter(user=signed_in(request)).order_by("-created_at")
    return render(request, "front/tokens.html", {"tokens": listing, "created": created})
