"""Builds (upload, list, show with the log, cancel) and an app's build
arguments and secrets."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status

from paas.accounts.types import signed_in
from paas.api.pagination import PageParams, paged
from paas.api.responses import ERRORS, answers
from paas.api.schemas import (
    BuildArgOut,
    BuildArgs,
    BuildDetail,
    BuildList,
    BuildOut,
    BuildSecretOut,
    BuildSecrets,
    PathName,
    ValueIn,
)
from paas.applications.selectors import app_for_user
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
from paas.core.errors import Conflict

router = Router(tags=["builds"])

# The upload is read by the service only once the user may deploy and the
# announced size fits, so it is not a parameter ninja would parse first;
# the schema still documents it.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["source"],
                    "properties": {
                        "source": {
                            "type": "string",
                            "format": "binary",
                            "description": "a .tar, .tar.gz/.tgz or .zip of the app's source",
                        }
                    },
                }
            }
        },
    }
}


def build_json(build: Build) -> dict[str, Any]:
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


@router.get("/apps/{name}/builds", response=answers(200, BuildList))
def build_list(request: HttpRequest, name: PathName, page: Query[PageParams]) -> dict[str, Any]:
    app = app_for_user(user=request.user, name=name)
    rows, paging = paged(app.builds.select_related("app").order_by("-created_at"), page)
    return {"builds": [build_json(b) for b in rows], **paging}


@router.post("/apps/{name}/builds", response=answers(201, BuildOut), openapi_extra=UPLOAD_BODY)
def build_upload(request: HttpRequest, name: PathName) -> Status[dict[str, Any]]:
    """Upload source (multipart field ``source``) and queue its build."""
    build = build_accept_upload(
        user=signed_in(request),
        app_name=name,
        content_length=request.META.get("CONTENT_LENGTH"),
        read_source=lambda: request.FILES.get("source"),
    )
    return Status(201, build_json(build))


class SinceParams(Schema):
    since: str = Field(
        "", pattern=r"^[0-9]{0,18}$", description="the last log line number you have (0: all)"
    )


@router.get("/builds/{build_id}", response=answers(200, BuildDetail))
def build_show(
    request: HttpRequest, build_id: PathName, since: Query[SinceParams]
) -> dict[str, Any]:
    """The build and its log lines after ``since`` (poll with the last seq you got)."""
    build = build_for_user(user=request.user, build_id=build_id)
    log = build_log_since(str(build.pk), int(since.since or 0))
    return {**build_json(build), "log": [{"seq": s, "text": t} for s, t in log]}


@router.post("/builds/{build_id}/cancel", response=answers(200, BuildOut))
def build_cancel_view(request: HttpRequest, build_id: PathName) -> dict[str, Any]:
    """Cancel a queued or running build; 409 when it has already ended."""
    build = build_for_user(user=request.user, build_id=build_id, action="deploy")
    if not build_cancel(build=build, user=signed_in(request)):
        raise Conflict(f"Build #{build.number} has already ended ({build.state}).")
    build.refresh_from_db()
    return build_json(build)


@router.get("/apps/{name}/build-args", response=answers(200, BuildArgs))
def build_arg_list(request: HttpRequest, name: PathName) -> dict[str, Any]:
    app = app_for_user(user=request.user, name=name)
    return {"build_args": build_args_of(app=app)}


@router.put("/apps/{name}/build-args/{arg}", response=answers(200, BuildArgOut))
def build_arg_put(
    request: HttpRequest, name: PathName, arg: PathName, body: ValueIn
) -> dict[str, Any]:
    app = app_for_user(user=request.user, name=name, action="deploy")
    saved = build_arg_set(app=app, name=arg, value=body.value)
    return {"name": saved.name, "value": saved.value}


@router.delete("/apps/{name}/build-args/{arg}", response={204: None, **ERRORS})
def build_arg_remove(request: HttpRequest, name: PathName, arg: PathName) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    build_arg_delete(app=app, name=arg)
    return HttpResponse(status=204)


@router.get("/apps/{name}/build-secrets", response=answers(200, BuildSecrets))
def build_secret_list(request: HttpRequest, name: PathName) -> dict[str, Any]:
    """Names only: a secret's value is never shown again once entered."""
    app = app_for_user(user=request.user, name=name)
    return {"build_secrets": build_secret_names(app=app)}


@router.put("/apps/{name}/build-secrets/{secret}", response=answers(200, BuildSecretOut))
def build_secret_put(
    request: HttpRequest, name: PathName, secret: PathName, body: ValueIn
) -> dict[str, Any]:
    app = app_for_user(user=request.user, name=name, action="deploy")
    saved = build_secret_set(app=app, name=secret, value=body.value)
    return {"name": saved.name, "updated_at": saved.updated_at.isoformat()}


@router.delete("/apps/{name}/build-secrets/{secret}", response={204: None, **ERRORS})
def build_secret_remove(request: HttpRequest, name: PathName, secret: PathName) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    build_secret_delete(app=app, name=secret)
    return HttpResponse(status=204)
