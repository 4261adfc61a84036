"""An app's stored log lines (its instances, the router, the platform),
filtered and paged by sequence number. Live follow: the WebSocket
/ws/apps/<name>/logs/ (a signed-in session), or poll with ``?after=``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from paas.api.responses import answers
from paas.api.schemas import AppLogs, PathName, Text
from paas.applications.selectors import app_for_user
from paas.logs.filters import LogFilter
from paas.logs.lines import FIELDS
from paas.logs.selectors import logs_page

router = Router(tags=["logs"])

SEQ_MAX = 2**62


class LogQuery(Schema):
    process: Text = Field("", description="process type, e.g. web")
    instance: Text = Field("", description="instance, e.g. web.1")
    source: Text = Field("", description="app, build, router or platform")
    q: Text = Field("", description="text the line contains (any case)")
    limit: int = Field(100, ge=1, le=1000)
    before: int | None = Field(None, ge=0, le=SEQ_MAX, description="lines older than this seq")
    after: int | None = Field(None, ge=0, le=SEQ_MAX, description="lines newer than this seq")


@router.get("/apps/{name}/logs", response=answers(200, AppLogs))
def log_list(request: HttpRequest, name: PathName, query: Query[LogQuery]) -> dict[str, Any]:
    """The newest ``limit`` lines (older than ``before``), or with ``after`` the
    lines that came since: poll with ``after=last_seq`` to follow."""
    app = app_for_user(user=request.user, name=name)
    flt = LogFilter.parse(query.model_dump(include={"process", "instance", "source", "q"}))
    page = logs_page(
        app_id=app.pk, flt=flt, limit=query.limit, before=query.before, after=query.after
    )
    return {
        "lines": [dict(zip(FIELDS, r, strict=True)) for r in page.rows],
        "next_before": page.next_before,
        "last_seq": page.last_seq,
        "websocket": f"/ws/apps/{app.name}/logs/",
    }
