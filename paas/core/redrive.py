"""Work the broker may have lost, sent again.

Tasks live in Redis until a worker takes them. A Redis that restarts
without its data (or with a snapshot older than the last enqueue) loses the
queued ones, while the database still says "queued" / "pending": that build
or release would wait for ever. So each enqueue leaves a marker key in the
broker's own Redis beside the message; a periodic sweep sends the task
again for every row that has waited longer than ``PAAS_REDRIVE_AFTER_S``
and has no marker. A marker lost with the queue is exactly the case to
re-drive; one that merely expired in a long queue costs a duplicate message,
which the task's own claim turns into a no-op.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar, cast

import redis
from celery import current_app

log = logging.getLogger(__name__)

MARK_TTL_S = 3600
T = TypeVar("T", str, int)  # a build's id, a release's


def _client() -> redis.Redis:
    return redis.Redis.from_url(str(current_app.conf.broker_url), socket_timeout=5)


def _key(kind: str, ident: object) -> str:
    return f"paas:enqueued:{kind}:{ident}"


def enqueue_marked(kind: str, ident: T, send: Callable[[T], object]) -> None:
    """``send(ident)`` (the task), then mark it sent (best effort: a missing
    mark only means an early duplicate)."""
    send(ident)
    with contextlib.suppress(redis.RedisError):
        client = _client()
        try:
            client.set(_key(kind, ident), 1, ex=MARK_TTL_S)
        finally:
            client.close()


def redrive(kind: str, idents: list[T], send: Callable[[T], object]) -> list[T]:
    """Send again the tasks of ``idents`` that have no marker; returns them."""
    if not idents:
        return []
    client = _client()
    try:
        marks = cast(list[bytes | None], client.mget([_key(kind, i) for i in idents]))
        lost = [i for i, mark in zip(idents, marks, strict=True) if mark is None]
    finally:
        client.close()
    for ident in lost:
        log.warning("re-driving %s %s: its task is no longer in the broker", kind, ident)
        enqueue_marked(kind, ident, send)
    return lost
