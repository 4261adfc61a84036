"""Following an app's log over the API as server-sent events, as a WSGI
server (the test client) serves it (paas/logs/poll_stream.py): history, then
lines stored while the client listens, in order, each once; a reconnect
with Last-Event-ID resumes after the last line it had; other teams get 404.
(Under daphne: test_api_live_stream.py.)"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from paas.logs.models import LogLine
from paas.logs.services import logs_platform_say
from tests.web.api_support import auth
from tests.web.logs.stream_support import lines_of, shop_with_lines, sse_events

pytestmark = pytest.mark.django_db(transaction=True)


def _events(chunks: Iterable[bytes]) -> Iterator[tuple[str, Any, str]]:
    """(event, data, id) of each event in the stream; comments skipped."""
    return sse_events(lines_of(chunks), comments=False)


@pytest.fixture
def shop(alice: Any, settings: Any) -> Any:
    settings.PAAS_LOG_STREAM_MAX_S = 3.0
    return shop_with_lines(alice, "one", "two")


def test_it_sends_history_then_new_lines_then_ends(client: Any, alice: Any, shop: Any) -> None:
    response = client.get("/api/v1/apps/shop/logs/stream?limit=10", **auth(alice))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    seen: list[str] = []
    ids: list[int] = []
    ended = None
    for event, data, ident in _events(response.streaming_content):
        if event == "end":
            ended = data
            break
        seen.append(data["text"])
        ids.append(int(ident))
        if data["text"] == "two":  # history sent: now a line arrives while it listens
            logs_platform_say(app_id=shop.pk, text="three")
    assert seen == ["one", "two", "three"]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert ended == {"next": ids[-1], "reason": "max_duration"}


def test_a_reconnect_resumes_after_its_last_event(client: Any, alice: Any, shop: Any) -> None:
    first = LogLine.objects.get(app=shop, text="one")
    headers = {**auth(alice), "HTTP_LAST_EVENT_ID": str(first.seq)}
    response = client.get("/api/v1/apps/shop/logs/stream", **headers)
    texts = [d["text"] for e, d, _ in _events(response.streaming_content) if e == "line"]
    assert texts == ["two"]


def test_another_team_and_no_token_get_nothing(client: Any, bob: Any, shop: Any) -> None:
    assert client.get("/api/v1/apps/shop/logs/stream", **auth(bob)).status_code == 404
    assert client.get("/api/v1/apps/shop/logs/stream").status_code == 401
