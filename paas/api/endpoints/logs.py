"""An app's stored log lines (its instances, the router, the platform),
filtered and paged by sequence number. Follow: server-sent events from
``/logs/stream`` (``curl -N``, the CLI's ``logs -f``), or poll with
``?since=next``; a browser session follows over the WebSocket
/ws/apps/<name>/logs/.

Under daphne the stream is an async iterator fed by Redis pub/sub
(paas/logs/live_stream.py): no thread per follower. Under a WSGI server
(the test server, ``runserver``) a request owns a thread anyway, and the
stream polls the database from it (paas/logs/poll_stream.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema

from paas.accounts.services import api_token_authenticate, role_in_team
from paas.api.responses import ERRORS, answers
from paas.api.schemas import AppLogs, PathName, Text
from paas.applications.models import App
from paas.applications.selectors import app_for_user
from paas.logs.filters import LogFilter
from paas.logs.live_stream import live_log_events
from paas.logs.poll_stream import log_events
from paas.logs.selectors import logs_page
from paas.logs.sse import LiveFollow, line_of

router = Router(tags=["logs"])

SEQ_MAX = 2**62


class LogQuery(Schema):
    ps: Text = Field("", description="process type, e.g. web")
    process: Text = Field("", description="the same as ps")
    instance: Text = Field("", description="instance, e.g. web.1")
    source: Text = Field("", description="app, build, router or platform")
    q: Text = Field("", description="text the line contains (any case)")
    limit: int = Field(100, ge=1, le=1000)
    since: int | None = Field(
        None, ge=0, le=SEQ_MAX, description="lines after this id, oldest first"
    )
    before: int | None = Field(None, ge=0, le=SEQ_MAX, description="lines older than this id")


@router.get("/apps/{name}/logs", response=answers(200, AppLogs))
def log_list(request: HttpRequest, name: PathName, query: Query[LogQuery]) -> dict[str, Any]:
    """The newest ``limit`` lines (older than ``before``), or with ``since`` the
    lines that came after it: poll with ``since=next`` to follow."""
    app = app_for_user(user=request.user, name=name)
    page = logs_page(
        app_id=app.pk, flt=_filter(query), limit=query.limit, before=query.before,
        since=query.since,
    )  # fmt: skip
    return {
        "lines": [line_of(r) for r in page.rows],
        "next": page.next,
        "next_before": page.next_before,
        "websocket": f"/ws/apps/{app.name}/logs/",
    }


EVENT_STREAM = {
    200: {
        "description": "text/event-stream: `line` events (data: a line as in the list, "
        "id: its id), `: heartbeat` comments while quiet, then an `end` event (data: "
        "next, reason) after PAAS_LOG_STREAM_MAX_S; reconnect with Last-Event-ID (or "
        "?since=) to go on",
        "content": {"text/event-stream": {"schema": {"type": "object"}}},
    }
}


@router.get("/apps/{name}/logs/stream", response=ERRORS, openapi_extra={"responses": EVENT_STREAM})
def log_stream(request: HttpRequest, name: PathName, query: Query[LogQuery]) -> Any:
    """Follow the log live as server-sent events: the last ``limit`` lines
    (or those after ``since`` / the Last-Event-ID header), then new ones.
    (Under daphne, paas/api/log_stream_asgi.py answers this path first.)"""
    app = app_for_user(user=request.user, name=name)
    raw_token = request.headers.get("Authorization", "").partition(" ")[2].strip()
    follow = live_follow_of(user=request.user, raw_token=raw_token, app=app, query=query,
                            last_event_id=request.headers.get("Last-Event-ID", ""))  # fmt: skip
    content: Iterator[bytes] | AsyncIterator[bytes]
    content = live_log_events(follow) if isinstance(request, ASGIRequest) else log_events(follow)
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    for header, value in STREAM_HEADERS.items():
        response[header] = value
    return response


STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # a proxy in front must not hold the events
}


def live_follow_of(
    *, user: Any, raw_token: str, app: App, query: LogQuery, last_event_id: str
) -> LiveFollow:
    """What a live follow streams, for a user already checked against the app."""
    since = query.since if query.since is not None else _last_event_id(last_event_id)
    return LiveFollow(
        app_id=app.pk, user_id=user.pk,
        still_allowed=_access_check(raw_token, user.pk, app.team_id),
        flt=_filter(query), since=since, history=query.limit,
        max_s=settings.PAAS_LOG_STREAM_MAX_S, heartbeat_s=settings.PAAS_LOG_STREAM_HEARTBEAT_S,
        max_bytes=settings.PAAS_LOG_STREAM_MAX_BYTES,
    )  # fmt: skip


def _filter(query: LogQuery) -> LogFilter:
    wanted = {"instance": query.instance, "source": query.source, "q": query.q}
    return LogFilter.parse({**wanted, "process": query.ps or query.process})


def _access_check(raw_token: str, user_id: int, team_id: int) -> Callable[[], bool]:
    """Whether the token still works for its user and the user is still in
    the app's team (a long follow asks again now and then)."""

    def still_allowed() -> bool:
        user = api_token_authenticate(raw=raw_token)
        return (
            user is not None
            and user.pk == user_id
            and (role_in_team(user=user, team_id=team_id) is not None)
        )

    return still_allowed


def _last_event_id(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) <= SEQ_MAX else None
