"""Releases (list, deploy an image, rollback), config vars, formation
(scale, publish a TCP port), instances and their lifecycle, whole-app
actions and the audit log. Thin: each translates JSON and calls a service."""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest
from ninja import Query, Router, Status

from paas.accounts.types import signed_in
from paas.api.pagination import PageParams, paged
from paas.api.responses import answers
from paas.api.schemas import (
    AppQueued,
    AuditList,
    ConfigChanged,
    ConfigIn,
    ConfigOut,
    FormationOut,
    ImageIn,
    ImageQueued,
    InstanceList,
    InstanceQueued,
    PathName,
    ReleaseList,
    ReleaseNumber,
    ReleaseOut,
    ScaleIn,
    SignalIn,
)
from paas.applications import releases
from paas.applications.models import Release
from paas.applications.selectors import app_for_user, config_for_user
from paas.applications.views_data import (
    audit_json,
    formation_json,
    instance_json,
    release_json,
)
from paas.core.errors import ValidationFailed
from paas.hosts import lifecycle

router = Router(tags=["deploys"])


def _release_or_none(release: Release | None) -> dict[str, Any] | None:
    return release_json(release) if release else None


@router.get("/apps/{name}/releases", response=answers(200, ReleaseList))
def release_list(request: HttpRequest, name: PathName, page: Query[PageParams]) -> dict[str, Any]:
    """Newest first."""
    app = app_for_user(user=request.user, name=name)
    rows, paging = paged(app.releases.order_by("-number"), page)
    return {"releases": [release_json(r) for r in rows], **paging}


@router.post("/apps/{name}/releases", response=answers(202, ImageQueued))
def release_image(
    request: HttpRequest, name: PathName, body: ImageIn | None = None
) -> Status[dict[str, Any]]:
    """Deploy an image of this app (or of another app of its team) already in the registry."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    image = body.image if body else ""
    releases.release_image_request(user=signed_in(request), app=app, image=image)
    return Status(202, {"app": app.name, "image": image, "queued": True})


@router.post("/apps/{name}/releases/{number}/rollback", response=answers(201, ReleaseOut))
def release_rollback(
    request: HttpRequest, name: PathName, number: ReleaseNumber
) -> Status[dict[str, Any]]:
    """A new release running what release ``number`` ran (image, config, processes)."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    release = releases.release_rollback(user=signed_in(request), app=app, number=number)
    return Status(201, release_json(release))


@router.get("/apps/{name}/config", response=answers(200, ConfigOut))
def config_list(request: HttpRequest, name: PathName) -> dict[str, Any]:
    """Keys and values; values are masked unless you own the app's team."""
    app = app_for_user(user=request.user, name=name)
    return {"config": config_for_user(user=request.user, app=app)}


@router.post("/apps/{name}/config", response=answers(200, ConfigChanged))
def config_change(
    request: HttpRequest, name: PathName, body: ConfigIn | None = None
) -> dict[str, Any]:
    """{"set": {KEY: value}, "unset": [KEY]}: each change makes a release (and a
    deploy) once the app has an image."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    release = None
    if body and body.set:
        release = releases.config_set(user=signed_in(request), app=app, values=body.set)
    if body and body.unset:
        release = releases.config_unset(user=signed_in(request), app=app, keys=body.unset)
    return {"release": _release_or_none(release)}


@router.get("/apps/{name}/formation", response=answers(200, FormationOut))
def formation_list(request: HttpRequest, name: PathName) -> dict[str, Any]:
    app = app_for_user(user=request.user, name=name)
    return {"formation": formation_json(app)}


@router.post("/apps/{name}/formation/{process_type}", response=answers(202, FormationOut))
def formation_change(
    request: HttpRequest, name: PathName, process_type: PathName, body: ScaleIn | None = None
) -> Status[dict[str, Any]]:
    """{"count": N, "memory_bytes"?: M} scales; {"tcp_port": P | null} publishes a
    TCP port (or stops); both may come together."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    body = body or ScaleIn.model_validate({})
    given = body.model_fields_set
    if "tcp_port" in given:
        releases.formation_publish(
            user=signed_in(request), app=app, process_type=process_type, tcp_port=body.tcp_port
        )
    if "tcp_port" not in given or body.count is not None:
        if body.count is None:
            raise ValidationFailed("'count' must be a whole number.", field="count")
        releases.formation_scale(
            user=signed_in(request), app=app, process_type=process_type, count=body.count,
            memory_bytes=body.memory_bytes,
        )  # fmt: skip
    return Status(202, {"formation": formation_json(app)})


@router.get("/apps/{name}/instances", response=answers(200, InstanceList))
def instance_list(request: HttpRequest, name: PathName, page: Query[PageParams]) -> dict[str, Any]:
    app = app_for_user(user=request.user, name=name)
    rows = app.instances.select_related("release", "host").order_by("process_type", "index", "id")
    items, paging = paged(rows, page)
    return {"instances": [instance_json(i) for i in items], **paging}


@router.post("/apps/{name}/instances/{instance}/{action}", response=answers(202, InstanceQueued))
def instance_act(
    request: HttpRequest,
    name: PathName,
    instance: PathName,
    action: Literal["stop", "start", "restart", "kill"],
    body: SignalIn | None = None,
) -> Status[dict[str, Any]]:
    """Queue a lifecycle action on one instance (by its name from the list);
    kill takes {"signal": "TERM"}. The outcome lands in the audit log."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    signal = body.signal if body else "KILL"
    lifecycle.instance_action_request(
        user=signed_in(request), app=app, name=instance, action=action, signal=signal
    )
    return Status(202, {"instance": instance, "action": action, "queued": True})


@router.post("/apps/{name}/actions/{action}", response=answers(202, AppQueued))
def app_act(
    request: HttpRequest, name: PathName, action: Literal["restart", "stop", "start"]
) -> Status[dict[str, Any]]:
    """Queue a whole-app action: a rolling restart, stop or start of every instance."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    lifecycle.app_action_request(user=signed_in(request), app=app, action=action)
    return Status(202, {"app": app.name, "action": action, "queued": True})


@router.get("/apps/{name}/audit", response=answers(200, AuditList))
def audit_list(request: HttpRequest, name: PathName, page: Query[PageParams]) -> dict[str, Any]:
    """Newest first."""
    app = app_for_user(user=request.user, name=name)
    rows, paging = paged(app.audit_entries.order_by("-created_at", "-id"), page)
    return {"audit": [audit_json(a) for a in rows], **paging}
