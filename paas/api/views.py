from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from paas.accounts.services import team_for_user
from paas.accounts.types import signed_in
from paas.api.auth import api_view
from paas.api.bodies import json_body
from paas.applications.models import App
from paas.applications.selectors import app_for_user, apps_visible_to
from paas.applications.services import app_create
from paas.builds.buildvars import (
    build_arg_delete,
    build_arg_set,
    build_args_of,
    build_secret_delete,
    build_secret_names,
    build_secret_set,
)
from paas.builds.models import Build
from paas.builds.selectors import build_for_user, build_log_since
from paas.builds.services import build_accept_upload, build_cancel
from paas.core.errors import Conflict, ValidationFailed


def _app_json(app: App) -> dict[str, Any]:
    return {"name": app.name, "team": app.team_id, "created_at": app.created_at.isoformat()}


def _build_json(build: Build) -> dict[str, Any]:
    return {
        "id": str(build.pk),
        "app": build.app.name,
        "number": build.number,
        "state": build.state,
        "error": build.error,
        "kind": build.kind,
        "image": build.image_ref,
        "digest": build.image_digest,
        "created_at": build.created_at.isoformat(),
        "finished_at": build.finished_at.isoformat() if build.finished_at else None,
    }


@api_view
@require_http_methods(["GET", "POST"])
def apps(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"apps": [_app_json(a) for a in apps_visible_to(user=request.user)]})
    data = json_body(request)
    team = team_for_user(user=signed_in(request), team_id=data.get("team"), action="deploy")
    app = app_create(user=signed_in(request), team=team, name=str(data.get("name", "")))
    return JsonResponse(_app_json(app), status=201)


@api_view
@require_http_methods(["GET", "POST"])
def app_builds(request: HttpRequest, name: str) -> HttpResponse:
    if request.method == "GET":
        app = app_for_user(user=request.user, name=name)
        return JsonResponse({"builds": [_build_json(b) for b in app.builds.all()[:100]]})
    build = build_accept_upload(
        user=signed_in(request),
        app_name=name,
        content_length=request.META.get("CONTENT_LENGTH"),
        read_source=lambda: request.FILES.get("source"),
    )
    return JsonResponse(_build_json(build), status=201)


def _since(raw: str) -> int:
    """The last log sequence number the caller has (0: the whole log)."""
    if not raw:
        return 0
    if not raw.isdigit():
        raise ValidationFailed("since must be a log line number (0 or more).", field="since")
    return int(raw)


@api_view
@require_http_methods(["GET"])
def build_detail(request: HttpRequest, build_id: str) -> HttpResponse:
    build = build_for_user(user=request.user, build_id=build_id)
    since = _since(request.GET.get("since", ""))
    data = _build_json(build)
    data["log"] = [{"seq": s, "text": t} for s, t in build_log_since(str(build.pk), since)]
    return JsonResponse(data)


@api_view
@require_http_methods(["GET"])
def app_build_args(request: HttpRequest, name: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name)
    return JsonResponse({"build_args": build_args_of(app=app)})


@api_view
@require_http_methods(["PUT", "DELETE"])
def app_build_arg(request: HttpRequest, name: str, arg: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    if request.method == "DELETE":
        build_arg_delete(app=app, name=arg)
        return HttpResponse(status=204)
    saved = build_arg_set(app=app, name=arg, value=json_body(request).get("value"))
    return JsonResponse({"name": saved.name, "value": saved.value})


@api_view
@require_http_methods(["GET"])
def app_build_secrets(request: HttpRequest, name: str) -> HttpResponse:
    """Names only: a secret's value is never shown again once entered."""
    app = app_for_user(user=request.user, name=name)
    return JsonResponse({"build_secrets": build_secret_names(app=app)})


@api_view
@require_http_methods(["PUT", "DELETE"])
def app_build_secret(request: HttpRequest, name: str, secret: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    if request.method == "DELETE":
        build_secret_delete(app=app, name=secret)
        return HttpResponse(status=204)
    saved = build_secret_set(app=app, name=secret, value=json_body(request).get("value"))
    return JsonResponse({"name": saved.name, "updated_at": saved.updated_at.isoformat()})


@api_view
@require_http_methods(["POST"])
def build_cancel_view(request: HttpRequest, build_id: str) -> HttpResponse:
    """Cancel a queued or running build; 409 when it has already ended."""
    build = build_for_user(user=request.user, build_id=build_id, action="deploy")
    if not build_cancel(build=build, user=signed_in(request)):
        raise Conflict(f"Build #{build.number} has already ended ({build.state}).")
    build.refresh_from_db()
    return JsonResponse(_build_json(build))
