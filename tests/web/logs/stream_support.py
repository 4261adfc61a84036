"""Helpers of the tests of the API's live log follow (server-sent events):
an app with a log to follow, daphne's environment for it, reading the
events, and the Redis subscriptions a follower holds."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from paas.applications.services import app_create
from paas.logs.services import logs_platform_say
from tests.web.conftest import _worker_env


def shop_with_lines(user: Any, *texts: str) -> Any:
    """App "shop" of the user's team, with a platform line of each text in its log."""
    app = app_create(user=user, team=user.personal_team, name="shop")
    for text in texts:
        logs_platform_say(app_id=app.pk, text=text)
    return app


def daphne_env(redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of a daphne (run_daphne) on this run's database and
    ``redis_url``, whose follows last 5 minutes unless ``settings`` say otherwise."""
    return {**_worker_env(redis_url), "PAAS_LOG_STREAM_MAX_S": "300", **settings}


def sse_events(lines: Iterable[str], *, comments: bool = True) -> Iterator[tuple[str, Any, str]]:
    """(event, data, id) of each event of a server-sent-events stream, from
    its lines as they come; a comment line is ("comment", its text, "")."""
    fields: dict[str, str] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith(":"):
            if comments:
                yield "comment", line[1:].strip(), ""
        elif line:
            key, _, value = line.partition(": ")
            fields[key] = value
        else:  # an event's end
            if "event" in fields:
                yield fields["event"], json.loads(fields["data"]), fields.get("id", "")
            fields = {}


def lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a response's body, as its chunks come."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode()


def subscriptions(redis_url: str, app_id: int) -> tuple[int, list[bytes]]:
    """Subscribers of the app's log group, and the follow channels subscribed."""
    client = redis.Redis.from_url(redis_url)
    try:
        numsub: Any = client.pubsub_numsub(f"asgi__group__app_{app_id}_logs")
        channels: Any = client.pubsub_channels("*logstream.*")
        ((_, group),) = numsub
        return int(group), list(channels)
    finally:
        client.close()


def subscribed(redis_url: str, app_id: int, *, followers: int) -> bool:
    """One group subscription for the web process, one channel per follower."""
    group, channels = subscriptions(redis_url, app_id)
    return group == 1 and len(channels) == followers
