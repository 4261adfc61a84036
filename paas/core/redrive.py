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

A marker alone is not proof: a worker killed (SIGKILL, OOM, host loss) just
after its BRPOP took a message from a queue, before kombu filed it in the
``unacked`` hash, takes the message with it and leaves the marker behind
(kombu pops first and records after; a paused queue widens that window: a
BRPOP sent before the pause hands over a message that kombu then has to put
back). So a row also counts as lost when no queue list and no ``unacked``
entry holds a message of its task for it. A message a worker is about to
file, or has acked but not yet claimed, costs a duplicate, as above.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TypeVar, cast

import redis
from celery import current_app

from paas.core.work_slots import BUILD_QUEUE, CONTROL_QUEUE, WORK_QUEUE

log = logging.getLogger(__name__)

MARK_TTL_S = 3600
# Where kombu's Redis transport keeps a task's message: a queue's list until
# a worker takes it, then its ``unacked`` hash until the worker acks it.
QUEUES = (BUILD_QUEUE, WORK_QUEUE, CONTROL_QUEUE)
UNACKED = "unacked"
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


def _first_arg(payload: dict[str, object], task: str) -> str | None:
    """The first argument of a message of ``task`` (Celery protocol 2: the
    body is ``[args, kwargs, embed]``), else None."""
    headers = payload.get("headers")
    if not isinstance(headers, dict) or headers.get("task") != task:
        return None
    try:
        body = str(payload["body"])
        props = payload.get("properties")
        if isinstance(props, dict) and props.get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        args = json.loads(body)[0]
        return str(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _held(client: redis.Redis, task: str) -> set[str]:
    """The first arguments of every message of ``task`` the broker holds,
    queued or taken by a worker and not yet acked."""
    raw = [m for q in QUEUES for m in cast(list[bytes], client.lrange(q, 0, -1))]
    raw += [m for m in cast(list[bytes], client.hvals(UNACKED))]
    held = set()
    for item in raw:
        try:
            payload = json.loads(item)
        except ValueError:
            continue
        if isinstance(payload, list) and payload:  # unacked: [message, exchange, key]
            payload = payload[0]
        if isinstance(payload, dict) and (arg := _first_arg(payload, task)) is not None:
            held.add(arg)
    return held


def redrive(kind: str, idents: list[T], send: Callable[[T], object], *, task: str) -> list[T]:
    """Send again the tasks (named ``task``) of ``idents`` that have no
    marker or no message in the broker; returns them."""
    if not idents:
        return []
    client = _client()
    try:
        marks = cast(list[bytes | None], client.mget([_key(kind, i) for i in idents]))
        held = _held(client, task)
        lost = [
            i for i, mark in zip(idents, marks, strict=True)
            if mark is None or str(i) not in held
        ]  # fmt: skip
    finally:
        client.close()
    for ident in lost:
        log.warning("re-driving %s %s: its task is no longer in the broker", kind, ident)
        enqueue_marked(kind, ident, send)
    return lost
