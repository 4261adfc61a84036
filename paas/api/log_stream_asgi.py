"""``GET /api/v1/apps/<name>/logs/stream`` under daphne: a plain ASGI app that
paas/asgi.py puts in front of Django for this one path.

Why not the ninja view: Django gives every ASGI request a context of its
own, and the first sync call in it (its request_started receivers, a sync
middleware or view) starts a thread that lives until the request ends. For
a follow that lasts minutes, that is an idle thread per follower (measured:
20 followers, 20 more threads in daphne). Here the request is a coroutine
from start to end: its few database reads (the token and the app once, then
the log's counter at quiet turns, a gap, the access check every 15 s) run
on the event loop's shared, bounded pool of threads.

The answers are the API's: the same token check (401 ``unauthenticated`` /
``bad_token``), the same team check (another team's app is a 404 like a
missing one), the same query (``LogQuery``: a bad value is a 400 naming the
field), the same events (paas/logs/live_stream.py). The ninja view still
documents the endpoint in the OpenAPI schema and serves WSGI servers.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from pydantic import ValidationError

from paas.accounts.services import api_token_authenticate
from paas.api.auth import BadToken, Unauthenticated
from paas.api.endpoints.logs import STREAM_HEADERS, LogQuery, live_follow_of
from paas.api.log_stream_path import PATH
from paas.applications.selectors import app_for_user
from paas.core.errors import PaasError, ValidationFailed
from paas.logs.live_stream import LiveFollow, live_log_events

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Follows open in this process, by user. Daphne keeps what a slow client has
# not read in memory (a follow ends after PAAS_LOG_STREAM_MAX_BYTES); this
# caps how many such buffers one user's tokens can hold open at once.
_open: Counter[int] = Counter()


class TooManyStreams(PaasError):
    code = "too_many_streams"
    status = 429


async def log_stream_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
    match = PATH.fullmatch(scope["path"])
    assert match is not None  # routed here by is_log_stream
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin1")))
    try:
        follow = await _follow_of(headers, match["name"], query)
        _take_slot(follow.user_id)
    except PaasError as exc:
        await _answer_json(send, exc.status, exc.as_dict())
        return
    try:
        await _stream(follow, receive, send)
    finally:
        _open[follow.user_id] -= 1
        if _open[follow.user_id] <= 0:
            del _open[follow.user_id]


def _take_slot(user_id: int) -> None:
    limit = settings.PAAS_LOG_STREAMS_PER_USER
    if _open[user_id] >= limit:
        raise TooManyStreams(
            f"You already follow {limit} logs at once (PAAS_LOG_STREAMS_PER_USER); "
            "close one of them, then try again."
        )
    _open[user_id] += 1


async def _stream(follow: LiveFollow, receive: Receive, send: Send) -> None:
    start_headers = [(b"content-type", b"text/event-stream")]
    start_headers += [(k.lower().encode(), v.encode()) for k, v in STREAM_HEADERS.items()]
    await send({"type": "http.response.start", "status": 200, "headers": start_headers})
    await _stream_until_gone(live_log_events(follow), receive, send)


async def _stream_until_gone(events: AsyncIterator[bytes], receive: Receive, send: Send) -> None:
    """Send the events until they end or the client leaves, whichever is
    first; the other is cancelled, so nothing outlives the request."""

    async def pump() -> None:
        async for chunk in events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(gone())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _checked_follow(headers: dict[str, str], name: str, raw_query: dict[str, str]) -> LiveFollow:
    scheme, _, raw = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise Unauthenticated("Send Authorization: Bearer <token>.")
    user = api_token_authenticate(raw=raw.strip())
    if user is None:
        raise BadToken("This token is unknown or revoked.")
    try:
        query = LogQuery.model_validate(raw_query)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else ""
        raise ValidationFailed(f"{field}: {first['msg']}", field=field) from None
    app = app_for_user(user=user, name=name)
    return live_follow_of(user=user, raw_token=raw.strip(), app=app, query=query,
                          last_event_id=headers.get("last-event-id", ""))  # fmt: skip


# The loop's shared pool, not one thread per request (see the module doc).
_follow_of = DatabaseSyncToAsync(_checked_follow, thread_sensitive=False)


async def _answer_json(send: Send, status: int, body: dict[str, Any]) -> None:
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="paas"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
