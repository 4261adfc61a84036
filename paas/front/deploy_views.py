"""The app page's deploy forms: each POST calls one service and goes back
to the app page with a message."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from paas.accounts.types import signed_in
from paas.applications import releases
from paas.applications.models import App
from paas.applications.registry_credentials import (
    registry_credential_delete,
    registry_credential_set,
)
from paas.applications.selectors import app_for_user
from paas.core.errors import NotFound, PaasError, ValidationFailed
from paas.hosts import lifecycle
from paas.hosts.app_delete import app_delete_request


def _int(value: str | None, field: str) -> int:
    if value is None or not value.strip().lstrip("-").isdigit():
        raise ValidationFailed(f"{field} must be a whole number.", field=field)
    return int(value)


def _act(request: HttpRequest, app: App, action: str) -> str:
    user, post = signed_in(request), request.POST
    if action == "rollback":
        release = releases.release_rollback(
            user=user, app=app, number=_int(post.get("number"), "number")
        )
        return f"Rolling back: {release.label} is deploying."
    if action == "image":
        image = post.get("image", "")
        releases.release_image_request(user=user, app=app, image=image)
        return f"Deploying {image}: a new release is on its way (see Releases)."
    if action == "registry-credential":
        saved = registry_credential_set(
            user=user, app=app, registry=post.get("registry", ""),
            username=post.get("username"), password=post.get("password"),
        )  # fmt: skip
        return f"Saved the credential for {saved.registry} (user {saved.username})."
    if action == "registry-forget":
        registry_credential_delete(user=user, app=app, registry=post.get("registry", ""))
        return f"Forgot the credential for {post.get('registry')}."
    if action == "publish":
        process_type, raw = post.get("process_type", ""), post.get("tcp_port", "").strip()
        port = _int(raw, "tcp_port") if raw else None
        releases.formation_publish(user=user, app=app, process_type=process_type, tcp_port=port)
        return f"{process_type}: TCP port {port or 'no longer'} published; rolling out."
    if action == "scale":
        process_type = post.get("process_type", "")
        count = _int(post.get("count"), "count")
        releases.formation_scale(user=user, app=app, process_type=process_type, count=count)
        return f"Scaling {process_type} to {count}."
    if action == "set":
        releases.config_set(user=user, app=app, values={post.get("key", ""): post.get("value", "")})
        return f"Set {post.get('key')}."
    if action == "unset":
        releases.config_unset(user=user, app=app, keys=[post.get("key", "")])
        return f"Unset {post.get('key')}."
    if action == "instance":
        name, verb = post.get("instance", ""), post.get("action", "")
        lifecycle.instance_action_request(user=user, app=app, name=name, action=verb)
        return f"{verb} {name}: on its way (see Activity)."
    if action in lifecycle.APP_ACTIONS:
        lifecycle.app_action_request(user=user, app=app, action=action)
        return f"{action} {app.name}: on its way (see Activity)."
    if action == "delete":
        app_delete_request(user=user, app=app, confirm=post.get("confirm", ""))
        return f"Deleting {app.name}: its instances, routes, images and data go."
    raise NotFound("No such action.")


@login_required
@require_POST
def app_deploy_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    try:
        app = app_for_user(user=request.user, name=name)
    except NotFound as exc:
        raise Http404(exc.message) from None
    try:
        messages.success(request, _act(request, app, action))
    except NotFound as exc:
        raise Http404(exc.message) from None
    except PaasError as exc:
        messages.error(request, exc.message)
        return redirect("app-detail", name=app.name)
    return redirect("dashboard") if action == "delete" else redirect("app-detail", name=app.name)
