"""REST endpoints for releases, config, formation, instances, lifecycle and
host joining. Thin: each translates JSON and calls a service."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from paas.accounts.services import role_in_team
from paas.accounts.types import signed_in
from paas.api.auth import api_view
from paas.api.bodies import json_body
from paas.applications import releases
from paas.applications.models import Release
from paas.applications.registry_credentials import (
    registry_credential_delete,
    registry_credential_set,
    registry_credentials_of,
)
from paas.applications.selectors import app_for_user
from paas.applications.views_data import (
    audit_json,
    config_json,
    formation_json,
    instance_json,
    release_json,
)
from paas.core.errors import PaasError, ValidationFailed
from paas.hosts import lifecycle
from paas.hosts.app_delete import app_delete_request
from paas.hosts.services import host_join


def _release_or_none(release: Release | None) -> dict[str, Any] | None:
    return release_json(release) if release else None


@api_view
@require_http_methods(["GET", "POST"])
def app_releases(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the releases. POST {"image": "registry/app:tag"}: deploy an image."""
    if request.method == "GET":
        app = app_for_user(user=request.user, name=name)
        return JsonResponse({"releases": [release_json(r) for r in app.releases.all()[:100]]})
    app = app_for_user(user=request.user, name=name, action="deploy")
    image = str(json_body(request, optional=True).get("image", ""))
    releases.release_image_request(user=signed_in(request), app=app, image=image)
    return JsonResponse({"app": app.name, "image": image, "queued": True}, status=202)


@api_view
@require_http_methods(["POST"])
def app_rollback(request: HttpRequest, name: str, number: int) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    release = releases.release_rollback(user=signed_in(request), app=app, number=number)
    return JsonResponse(release_json(release), status=201)


@api_view
@require_http_methods(["GET", "POST"])
def app_config(request: HttpRequest, name: str) -> HttpResponse:
    """GET: keys, values shown to owners only. POST {"set": {K: V}, "unset": [K]}."""
    if request.method == "GET":
        app = app_for_user(user=request.user, name=name)
        owner = role_in_team(user=request.user, team_id=app.team_id) == "owner"
        return JsonResponse({"config": config_json(app, reveal=owner)})
    app = app_for_user(user=request.user, name=name, action="deploy")
    data = json_body(request, optional=True)
    release = None
    if data.get("set"):
        values = data["set"]
        if not isinstance(values, dict):
            raise ValidationFailed("'set' must be an object of KEY: value.", field="set")
        release = releases.config_set(user=signed_in(request), app=app, values=values)
    if data.get("unset"):
        keys = data["unset"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValidationFailed("'unset' must be a list of keys.", field="unset")
        release = releases.config_unset(user=signed_in(request), app=app, keys=keys)
    return JsonResponse({"release": _release_or_none(release)})


@api_view
@require_http_methods(["GET"])
def app_formation(request: HttpRequest, name: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name)
    return JsonResponse({"formation": formation_json(app)})


@api_view
@require_http_methods(["POST"])
def app_scale(request: HttpRequest, name: str, process_type: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    data = json_body(request, optional=True)
    if "tcp_port" in data:
        port = data["tcp_port"]
        if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
            raise ValidationFailed("'tcp_port' must be a port number or null.", field="tcp_port")
        releases.formation_publish(
            user=signed_in(request), app=app, process_type=process_type, tcp_port=port
        )
        if "count" not in data:
            return JsonResponse({"formation": formation_json(app)}, status=202)
    count, memory = data.get("count"), data.get("memory_bytes")
    if not isinstance(count, int) or isinstance(count, bool):
        raise ValidationFailed("'count' must be a whole number.", field="count")
    if memory is not None and (not isinstance(memory, int) or isinstance(memory, bool)):
        raise ValidationFailed("'memory_bytes' must be a whole number.", field="memory_bytes")
    releases.formation_scale(
        user=signed_in(request), app=app, process_type=process_type, count=count,
        memory_bytes=memory,
    )  # fmt: skip
    return JsonResponse({"formation": formation_json(app)}, status=202)


@api_view
@require_http_methods(["GET"])
def app_instances(request: HttpRequest, name: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name)
    rows = app.instances.select_related("release", "host").order_by("process_type", "index")
    return JsonResponse({"instances": [instance_json(i) for i in rows]})


@api_view
@require_http_methods(["POST"])
def instance_act(request: HttpRequest, name: str, instance: str, action: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    signal = str(json_body(request, optional=True).get("signal", "KILL"))
    lifecycle.instance_action_request(
        user=signed_in(request), app=app, name=instance, action=action, signal=signal
    )
    return JsonResponse({"instance": instance, "action": action, "queued": True}, status=202)


@api_view
@require_http_methods(["POST"])
def app_act(request: HttpRequest, name: str, action: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    lifecycle.app_action_request(user=signed_in(request), app=app, action=action)
    return JsonResponse({"app": app.name, "action": action, "queued": True}, status=202)


@api_view
@require_http_methods(["GET"])
def app_audit(request: HttpRequest, name: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name)
    return JsonResponse({"audit": [audit_json(a) for a in app.audit_entries.all()[:200]]})


@csrf_exempt
@require_http_methods(["POST"])
def hosts_join(request: HttpRequest) -> HttpResponse:
    """An agent's host joins with a one-time join token (no user account):
    {"join_token", "name", "agent_url", "tls_fingerprint"} -> {"host", "credential"}."""
    try:
        data = json_body(request, optional=True)
        host, credential = host_join(
            raw_token=str(data.get("join_token", "")),
            name=str(data.get("name", "")),
            agent_url=str(data.get("agent_url", "")),
            tls_fingerprint=str(data.get("tls_fingerprint", "")),
        )
    except PaasError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    return JsonResponse({"host": host.name, "credential": credential}, status=201)


@api_view
@require_http_methods(["POST"])
def app_delete(request: HttpRequest, name: str) -> HttpResponse:
    """{"confirm": "<the app's name>"}: everything the app had goes (queued)."""
    app = app_for_user(user=request.user, name=name, action="manage")
    confirm = str(json_body(request, optional=True).get("confirm", ""))
    app_delete_request(user=signed_in(request), app=app, confirm=confirm)
    return JsonResponse({"app": name, "deleting": True}, status=202)


@api_view
@require_http_methods(["GET"])
def app_registry_credentials(request: HttpRequest, name: str) -> HttpResponse:
    """Registries and usernames; a password is never shown again once entered."""
    app = app_for_user(user=request.user, name=name)
    return JsonResponse({"registry_credentials": registry_credentials_of(app=app)})


@api_view
@require_http_methods(["PUT", "DELETE"])
def app_registry_credential(request: HttpRequest, name: str, registry: str) -> HttpResponse:
    """PUT {"username", "password"}: store (or replace); DELETE: forget."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    user = signed_in(request)
    if request.method == "DELETE":
        registry_credential_delete(user=user, app=app, registry=registry)
        return HttpResponse(status=204)
    body = json_body(request)
    saved = registry_credential_set(
        user=user,
        app=app,
        registry=registry,
        username=body.get("username"),
        password=body.get("password"),
    )
    return JsonResponse({"registry": saved.registry, "username": saved.username})
