"""The API's live log follow served by real daphne on real Redis: history,
then lines pushed as they are stored (a line whose publication was lost comes
from the database, in order), heartbeats while quiet, the team check, and a
client that leaves takes its subscriptions with it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from unittest.mock import ANY

import pytest
from channels.layers import channel_layers
from django.db import connection

from paas.accounts.services import api_token_create
from paas.logs.lines import IngestLine
from paas.logs.models import LogSource
from paas.logs.services import LAYER, logs_platform_say, logs_store
from tests.support.daphne import Daphne, run_daphne
from tests.support.processes import free_port, wait_until
from tests.support.redis_server import run_redis
from tests.web.logs.stream_support import (
    daphne_env,
    shop_with_lines,
    sse_events,
    subscribed,
    subscriptions,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

WAIT_S = 60.0  # conditions on a loaded machine, not timing goals


class Stream:
    """One server-sent-events response, read line by line as it comes."""

    def __init__(self, daphne: Daphne, path: str, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", daphne.port, timeout=WAIT_S)
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        self.response = self.conn.getresponse()
        lines = (line.decode() for line in iter(self.response.readline, b""))
        self._events = sse_events(lines)

    def next(self) -> tuple[str, Any]:
        """The next event, or ("comment", text) for a comment line."""
        for kind, data, _ in self._events:
            return kind, data
        raise AssertionError("the stream closed")

    def next_line(self) -> dict[str, Any]:
        while True:
            kind, data = self.next()
            if kind == "line":
                return data
            assert kind == "comment", (kind, data)

    def close(self) -> None:
        self.response.close()
        self.conn.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@pytest.fixture
def daphne(redis_url: str, tmp_path: Path) -> Iterator[Daphne]:
    # 20 followers of one user below: more than PAAS_LOG_STREAMS_PER_USER's default.
    env = daphne_env(redis_url, PAAS_LOG_STREAM_HEARTBEAT_S="0.3", PAAS_LOG_STREAMS_PER_USER="30")
    with run_daphne(env, tmp_path) as server:
        yield server


@pytest.fixture
def shop(alice: Any) -> Any:
    return shop_with_lines(alice, "one", "two")


def _line(text: str, source: LogSource = LogSource.APP) -> IngestLine:
    return IngestLine(source=source, timestamp=datetime.now(UTC), text=text, instance="web.1",
                      process_type="web")  # fmt: skip


def stream_line(like: dict[str, Any], text: str) -> dict[str, Any]:
    """An app line of web.1 as the stream shows it, with ``like``'s time."""
    return {**like, "source": "app", "process_type": "web", "instance": "web.1",
            "stream": "", "text": text, "time": ANY}  # fmt: skip


def test_it_pushes_stored_lines_in_order_and_fills_a_lost_publication(
    daphne: Daphne, alice: Any, shop: Any
) -> None:
    token = api_token_create(user=alice, name="t")[1]
    with Stream(daphne, "/api/v1/apps/shop/logs/stream?limit=10", token) as stream:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type") == "text/event-stream"
        assert [stream.next_line()["text"] for _ in range(2)] == ["one", "two"]
        logs_platform_say(app_id=shop.pk, text="three")  # published once committed
        assert stream.next_line()["text"] == "three"
        # Stored but never published (Redis was away): the next batch does not
        # follow the last line sent, so the stream reads the gap first.
        logs_store(lines_by_app={shop.pk: [_line("four")]})
        logs_platform_say(app_id=shop.pk, text="five")
        lines = [stream.next_line() for _ in range(2)]
        assert [ln["text"] for ln in lines] == ["four", "five"]
        assert lines[0]["id"] + 1 == lines[1]["id"]
        # Quiet: a heartbeat keeps proxies from cutting the stream.
        assert stream.next() == ("comment", "heartbeat")
        # A lost publication with no batch after it: found at a quiet turn.
        logs_store(lines_by_app={shop.pk: [_line("six")]})
        assert stream.next_line() == {**stream_line(lines[1], "six"), "id": lines[1]["id"] + 1}


def test_it_filters_and_a_reconnect_resumes_after_its_cursor(
    daphne: Daphne, alice: Any, shop: Any
) -> None:
    token = api_token_create(user=alice, name="t")[1]
    with Stream(daphne, "/api/v1/apps/shop/logs/stream?source=app&q=KEEP", token) as stream:
        logs_store(lines_by_app={shop.pk: [_line("drop me"), _line("keep 1")]})
        logs_platform_say(app_id=shop.pk, text="keep (a platform line)")
        logs_store(lines_by_app={shop.pk: [_line("keep 2")]})
        logs_platform_say(app_id=shop.pk, text="last")
        first, second = stream.next_line(), stream.next_line()
        assert [first["text"], second["text"]] == ["keep 1", "keep 2"]
    with Stream(daphne, f"/api/v1/apps/shop/logs/stream?since={first['id']}", token) as resumed:
        texts = [resumed.next_line()["text"] for _ in range(3)]
        assert texts == ["keep (a platform line)", "keep 2", "last"]


def test_it_answers_like_the_api_to_outsiders_and_bad_input(
    daphne: Daphne, alice: Any, bob: Any, shop: Any
) -> None:
    def get(path: str, token: str | None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", daphne.port, timeout=WAIT_S)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        answer = response.status, json.loads(response.read())
        conn.close()
        return answer

    stream = "/api/v1/apps/shop/logs/stream"
    bobs, alices = (api_token_create(user=u, name="t")[1] for u in (bob, alice))
    assert get(stream, bobs) == (404, {"error": "not_found", "message": ANY})
    assert get("/api/v1/apps/nope/logs/stream", alices)[0] == 404
    assert get(stream, None) == (401, {"error": "unauthenticated", "message": ANY})
    assert get(stream, "paas_nope") == (401, {"error": "bad_token", "message": ANY})
    status, body = get(f"{stream}?since=abc", alices)
    assert (status, body["error"], body["field"]) == (400, "invalid", "since")
    status, body = get(f"{stream}?limit=0", alices)
    assert (status, body["error"], body["field"]) == (400, "invalid", "limit")


def test_a_client_that_leaves_leaves_no_subscription_behind(
    daphne: Daphne, alice: Any, shop: Any, redis_url: str
) -> None:
    token = api_token_create(user=alice, name="t")[1]
    streams = [Stream(daphne, "/api/v1/apps/shop/logs/stream", token) for _ in range(2)]
    for stream in streams:
        assert stream.next_line()["text"] == "one"
    # One group subscription for the web process, one channel per follower.
    assert wait_until(lambda: subscribed(redis_url, shop.pk, followers=2), timeout_s=WAIT_S)
    streams[0].close()
    assert wait_until(lambda: subscribed(redis_url, shop.pk, followers=1), timeout_s=WAIT_S)
    logs_platform_say(app_id=shop.pk, text="still here")  # the other follower goes on
    assert streams[1].next_line()["text"] == "two"
    assert streams[1].next_line()["text"] == "still here"
    streams[1].close()
    assert wait_until(lambda: subscriptions(redis_url, shop.pk) == (0, []), timeout_s=WAIT_S)
    assert "Traceback" not in daphne.output()


def _publish_to(settings: Any, redis_url: str) -> None:
    """This process publishes its log batches to ``redis_url`` (the
    live_redis fixture puts the session's back after the test)."""
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        LAYER: {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [redis_url]}},
    }  # fmt: skip
    channel_layers.backends.clear()


def test_a_redis_restart_loses_and_repeats_no_line(
    alice: Any, shop: Any, settings: Any, tmp_path: Path
) -> None:
    redis_dir, port = tmp_path / "redis", free_port()
    token = api_token_create(user=alice, name="t")[1]
    with contextlib.ExitStack() as stack:
        first_redis = contextlib.ExitStack()
        url = first_redis.enter_context(run_redis(redis_dir, port))
        stack.callback(first_redis.close)
        _publish_to(settings, url)
        env = daphne_env(url, PAAS_LOG_STREAM_HEARTBEAT_S="0.3")
        server = stack.enter_context(run_daphne(env, tmp_path))
        stream = stack.enter_context(Stream(server, "/api/v1/apps/shop/logs/stream", token))
        assert [stream.next_line()["text"] for _ in range(2)] == ["one", "two"]
        logs_platform_say(app_id=shop.pk, text="before")
        assert stream.next_line()["text"] == "before"
        first_redis.close()  # Redis stops; daphne and the stream stay
        # Stored while Redis is away: their publication fails.
        for text in ("while away 1", "while away 2"):
            logs_platform_say(app_id=shop.pk, text=text)
        stack.enter_context(run_redis(redis_dir, port))
        logs_platform_say(app_id=shop.pk, text="after")
        texts = [stream.next_line()["text"] for _ in range(3)]
        assert texts == ["while away 1", "while away 2", "after"]
        logs_platform_say(app_id=shop.pk, text="last")
        assert stream.next_line()["text"] == "last"


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_followers_hold_no_thread_each(daphne: Daphne, alice: Any, shop: Any) -> None:
    token = api_token_create(user=alice, name="t")[1]
    path = "/api/v1/apps/shop/logs/stream"
    streams = [Stream(daphne, path, token) for _ in range(3)]
    try:
        for stream in streams:
            assert stream.next_line()["text"] == "one"
        before = _threads(daphne.pid)
        streams += [Stream(daphne, path, token) for _ in range(20)]
        for stream in streams[3:]:
            assert stream.next_line()["text"] == "one"
        # At most the event loop's shared pool grows (asyncio's default size);
        # a thread per request would be 20 more.
        assert _threads(daphne.pid) - before <= min(32, (os.cpu_count() or 1) + 4)
    finally:
        for stream in streams:
            stream.close()


def test_a_heartbeat_comes_while_only_filtered_out_lines_flow(
    daphne: Daphne, alice: Any, shop: Any
) -> None:
    token = api_token_create(user=alice, name="t")[1]
    heartbeat = threading.Event()

    def chatter() -> None:  # lines none of which the follower wants, until it hears one
        n = 0
        while not heartbeat.is_set():
            logs_platform_say(app_id=shop.pk, text=f"chatter {n}")
            n += 1
        connection.close()

    with Stream(daphne, "/api/v1/apps/shop/logs/stream?q=KEEP", token) as stream:
        writer = threading.Thread(target=chatter)
        writer.start()
        try:
            assert stream.next() == ("comment", "heartbeat")
        finally:
            heartbeat.set()
            writer.join()


@pytest.fixture
def small_daphne(redis_url: str, tmp_path: Path) -> Iterator[Daphne]:
    env = daphne_env(redis_url, PAAS_LOG_STREAM_MAX_BYTES="4096", PAAS_LOG_STREAMS_PER_USER="2")
    with run_daphne(env, tmp_path) as server:
        yield server


def _until_end_or(stream: Stream, last: str) -> tuple[list[dict[str, Any]], Any]:
    """Lines up to an ``end`` event (and its data), or up to the line ``last``."""
    lines: list[dict[str, Any]] = []
    while True:
        kind, data = stream.next()
        if kind == "end":
            return lines, data
        if kind == "line":
            lines.append(data)
            if data["text"] == last:
                return lines, None


def test_a_follow_ends_after_its_bytes_and_resumes_where_it_ended(
    small_daphne: Daphne, alice: Any, shop: Any
) -> None:
    """Daphne keeps what a slow client has not read: a follow is bounded in
    bytes too, and the client's reconnect from ``next`` misses nothing."""
    token = api_token_create(user=alice, name="t")[1]
    texts = [f"line {i:03} " + "x" * 60 for i in range(200)]
    logs_store(lines_by_app={shop.pk: [_line(text) for text in texts]})
    seen: list[dict[str, Any]] = []
    ends = 0
    since = 0
    while not seen or seen[-1]["text"] != texts[-1]:
        assert ends < 20, "~40 KB of events, 4 KiB per follow: it should have ended"
        with Stream(small_daphne, f"/api/v1/apps/shop/logs/stream?since={since}", token) as stream:
            lines, end = _until_end_or(stream, texts[-1])
        assert lines
        seen += lines
        if end is not None:
            ends += 1
            assert end["reason"] == "max_bytes", end
            assert end["next"] == lines[-1]["id"]
            assert sum(len(json.dumps(ln)) for ln in lines) < 2 * 4096
            since = end["next"]
    assert ends >= 5
    assert [ln["text"] for ln in seen] == ["one", "two", *texts]


def test_one_user_holds_at_most_its_share_of_follows(
    small_daphne: Daphne, alice: Any, shop: Any
) -> None:
    alices = api_token_create(user=alice, name="t")[1]
    path = "/api/v1/apps/shop/logs/stream"
    streams = [Stream(small_daphne, path, alices) for _ in range(2)]
    try:
        assert all(s.response.status == 200 for s in streams)
        refused = Stream(small_daphne, path, alices)
        assert refused.response.status == 429
        body = json.loads(refused.response.read())
        assert body["error"] == "too_many_streams"
        assert "PAAS_LOG_STREAMS_PER_USER" in body["message"]
        refused.close()
        streams.pop().close()  # a follow that ends gives its place back

        def admitted() -> bool:
            again = Stream(small_daphne, path, alices)
            if again.response.status == 200:
                streams.append(again)
                return True
            again.close()
            return False

        assert wait_until(admitted, timeout_s=WAIT_S)
    finally:
        for stream in streams:
            stream.close()
