"""Apps: list, create, show, destroy (the name typed again to confirm)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from paas.accounts.services import team_for_user
from paas.accounts.types import signed_in
from paas.api.pagination import PageParams, paged
from paas.api.responses import answers
from paas.api.schemas import AppDeleting, AppIn, AppList, AppOut, ConfirmIn, PathName
from paas.applications.models import App
from paas.applications.selectors import app_for_user, apps_visible_to
from paas.applications.services import app_create
from paas.hosts.app_delete import app_delete_request
from paas.router.selectors import app_url

router = Router(tags=["apps"])


def app_json(app: App) -> dict[str, Any]:
    return {
        "name": app.name,
        "team": app.team_id,
        "url": app_url(app=app),
        "created_at": app.created_at.isoformat(),
    }


@router.get("/apps", response=answers(200, AppList))
def app_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    """The apps of every team you are in."""
    rows, paging = paged(apps_visible_to(user=request.user).order_by("name"), page)
    return {"apps": [app_json(a) for a in rows], **paging}


@router.post("/apps", response=answers(201, AppOut))
def app_new(request: HttpRequest, body: AppIn) -> Status[dict[str, Any]]:
    team = team_for_user(user=signed_in(request), team_id=body.team, action="deploy")
    app = app_create(user=signed_in(request), team=team, name=body.name)
    return Status(201, app_json(app))


@router.get("/apps/{name}", response=answers(200, AppOut))
def app_show(request: HttpRequest, name: PathName) -> dict[str, Any]:
    return app_json(app_for_user(user=request.user, name=name))


def _destroy(request: HttpRequest, name: str, confirm: str) -> Status[dict[str, Any]]:
    app = app_for_user(user=request.user, name=name, action="manage")
    app_delete_request(user=signed_in(request), app=app, confirm=confirm)
    return Status(202, {"app": name, "deleting": True})


@router.delete("/apps/{name}", response=answers(202, AppDeleting))
def app_destroy(request: HttpRequest, name: PathName, confirm: Query[ConfirmIn]) -> Status[Any]:
    """Everything the app had goes (queued). ``?confirm=`` must repeat its name.
    Owners only."""
    return _destroy(request, name, confirm.confirm)


@router.post("/apps/{name}/delete", response=answers(202, AppDeleting))
def app_destroy_post(
    request: HttpRequest, name: PathName, body: ConfirmIn | None = None
) -> Status[Any]:
    """The same as DELETE /apps/{name}, with {"confirm": name} in the body."""
    return _destroy(request, name, body.confirm if body else "")
