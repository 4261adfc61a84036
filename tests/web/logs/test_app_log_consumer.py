"""The app log WebSocket on a real Redis (pub/sub layer): history, live
lines, filters, who may watch, and a slow watcher next to a fast one."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from paas.accounts.models import Membership
from paas.applications.services import app_create
from paas.logs import consumers
from paas.logs.models import LogLine, LogSource
from paas.logs.services import LAYER, app_logs_group, logs_platform_say, logs_store
from tests.web.logs.support import (
    ingest,
    line,
    next_lines,
    texts_until_replayed,
    until,
    watcher,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def shop(alice):
    return await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="shop")


async def test_it_replays_recent_history_in_time_order(alice, shop):
    # Stored out of time order (a slower host's line came later): shown in time order.
    await ingest(shop.pk, line("second", at=20), line("third", at=30))
    await ingest(shop.pk, line("first", at=10, instance="web.2"))
    connected, _, ws = await watcher("shop", alice)
    assert connected
    assert await texts_until_replayed(ws) == ["first", "second", "third"]
    await ws.disconnect()


async def test_it_streams_lines_stored_after_connecting(alice, shop):
    await ingest(shop.pk, line("old"))
    connected, _, ws = await watcher("shop", alice)
    assert await texts_until_replayed(ws) == ["old"]
    await ingest(shop.pk, line("new 1", at=1), line("new 2", at=2))
    message = await next_lines(ws)
    assert [(r[0], r[2], r[3], r[4], r[6]) for r in message["lines"]] == [
        (2, "app", "web", "web.1", "new 1"),
        (3, "app", "web", "web.1", "new 2"),
    ]
    await ws.disconnect()


async def test_it_filters_by_process_instance_and_text_in_history_and_live(alice, shop):
    await ingest(
        shop.pk,
        line("GET / ok", at=1),
        line("job done", at=2, process="worker", instance="worker.1"),
        line("GET /cart error", at=3, instance="web.2"),
    )
    connected, _, ws = await watcher("shop", alice, query="process=web&q=ERROR")
    assert await texts_until_replayed(ws) == ["GET /cart error"]
    await ingest(
        shop.pk,
        line("worker error", at=4, process="worker", instance="worker.1"),
        line("web error live", at=5),
    )
    assert [r[6] for r in (await next_lines(ws))["lines"]] == ["web error live"]

    # A filter message replaces the filter and replays under the new one.
    await ws.send_json_to({"type": "filter", "instance": "worker.1"})
    assert await texts_until_replayed(ws) == ["job done", "worker error"]
    await ingest(shop.pk, line("router line", at=6, source=LogSource.ROUTER, process="router",
                               instance="router"))  # fmt: skip
    await ingest(shop.pk, line("worker live", at=7, process="worker", instance="worker.1"))
    assert [r[6] for r in (await next_lines(ws))["lines"]] == ["worker live"]
    await ws.disconnect()


async def test_a_bad_filter_is_refused_with_a_message(alice, shop):
    connected, _, ws = await watcher("shop", alice)
    await texts_until_replayed(ws)
    await ws.send_json_to({"type": "filter", "source": "kernel"})
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "error"
    assert "source must be one of" in message["message"]
    await ws.disconnect()


async def test_a_viewer_in_the_team_may_watch(carol_viewer_in_alices_team, shop):
    await ingest(shop.pk, line("hello"))
    connected, _, ws = await watcher("shop", carol_viewer_in_alices_team)
    assert connected
    assert await texts_until_replayed(ws) == ["hello"]
    await ws.disconnect()


async def test_bob_of_another_team_is_refused_like_for_a_missing_app(bob, shop):
    for name in ("shop", "no-such-app"):
        connected, code, _ = await watcher(name, bob)
        assert (connected, code) == (False, 4403)


async def test_an_anonymous_visitor_is_refused(shop):
    connected, code, _ = await watcher("shop", None)
    assert (connected, code) == (False, 4403)


async def test_a_page_of_another_site_is_refused_by_its_origin(alice, shop):
    connected, _, _ = await watcher("shop", alice, origin=b"http://evil.example")
    assert not connected


async def test_a_slow_watcher_gets_a_dropped_notice_and_never_holds_up_a_fast_one(
    alice, shop, settings
):
    settings.PAAS_LOG_CONSUMER_BUFFER = 200
    _, _, slow = await watcher("shop", alice)
    _, _, fast = await watcher("shop", alice)
    assert await texts_until_replayed(slow) == []
    assert await texts_until_replayed(fast) == []
    batches, per_batch = 30, 50
    # The fast watcher keeps up; the slow one reads nothing meanwhile.
    received: list[str] = []
    for b in range(batches):
        await ingest(shop.pk, *[line(f"{b}-{i}", at=b * 100 + i) for i in range(per_batch)])
        while len(received) < (b + 1) * per_batch:
            received += [r[6] for r in (await next_lines(fast))["lines"]]
    assert received == [f"{b}-{i}" for b in range(batches) for i in range(per_batch)]

    # The slow one had a few batches in flight; the rest waited in a bounded
    # buffer and the oldest were dropped, which it is told when it catches up.
    shown: list[str] = []
    dropped = 0
    while len(shown) + dropped < batches * per_batch:
        message = await slow.receive_json_from(timeout=10)
        if message["type"] == "dropped":
            dropped += message["count"]
        elif message["type"] == "lines":
            shown += [r[6] for r in message["lines"]]
            await slow.send_json_to({"type": "ack", "batch": message["batch"]})
    assert dropped > 0
    assert len(shown) <= 4 * per_batch + 200  # in flight + the buffer: bounded
    assert shown[-1] == f"{batches - 1}-{per_batch - 1}"  # the newest lines are kept
    assert await slow.receive_nothing(timeout=0.5)
    await slow.disconnect()
    await fast.disconnect()


async def test_a_platform_line_said_in_a_transaction_arrives_once_it_commits(alice, shop):
    connected, _, ws = await watcher("shop", alice)
    await texts_until_replayed(ws)

    def deploy_step() -> None:
        with transaction.atomic():
            logs_platform_say(app_id=shop.pk, text="Starting web.1 from v3", instance="web.1")
            assert LogLine.objects.filter(app=shop).count() == 1  # stored, not yet published

    await sync_to_async(deploy_step)()
    (row,) = (await next_lines(ws))["lines"]
    assert (row[2], row[4], row[6]) == ("platform", "web.1", "Starting web.1 from v3")
    await ws.disconnect()


async def test_a_batch_that_waited_too_long_for_its_watcher_is_skipped_and_counted(alice, shop):
    connected, _, ws = await watcher("shop", alice)
    await texts_until_replayed(ws)
    (stored,) = await sync_to_async(logs_store)(
        lines_by_app={shop.pk: [line(f"old {i}", at=i) for i in range(3)]}
    )  # stored, published late:
    stale = {**stored.message(), "sent_at": time.time() - 60}
    await get_channel_layer(LAYER).group_send(app_logs_group(shop.pk), stale)
    await ingest(shop.pk, *[line(f"line {i}", at=i) for i in range(4)])
    messages = await until(ws, "lines")
    assert messages[0] == {"type": "dropped", "count": 3}  # said before the next lines
    assert [r[6] for r in messages[-1]["lines"]] == [f"line {i}" for i in range(4)]
    await ws.disconnect()


async def test_a_watcher_removed_from_the_team_is_disconnected(
    carol_viewer_in_alices_team, shop, monkeypatch
):
    monkeypatch.setattr(consumers, "MEMBERSHIP_RECHECK_S", 0.0)
    connected, _, ws = await watcher("shop", carol_viewer_in_alices_team)
    await texts_until_replayed(ws)
    await ingest(shop.pk, line("still a member"))
    assert [r[6] for r in (await next_lines(ws))["lines"]] == ["still a member"]

    await sync_to_async(Membership.objects.filter(user=carol_viewer_in_alices_team).delete)()
    await ingest(shop.pk, line("after the removal"))
    assert await ws.receive_output(timeout=10) == {"type": "websocket.close", "code": 4403}


async def received_texts(ws, count: int) -> tuple[list[str], int]:
    """Texts of the next ``count`` lines (acknowledged) and the lines said dropped."""
    texts: list[str] = []
    dropped = 0
    while len(texts) + dropped < count:
        message = await ws.receive_json_from(timeout=10)
        if message["type"] == "dropped":
            dropped += message["count"]
        elif message["type"] == "lines":
            texts += [r[6] for r in message["lines"]]
            await ws.send_json_to({"type": "ack", "batch": message["batch"]})
    return texts, dropped


async def test_a_page_that_reconnects_with_since_gets_every_line_after_it_once(
    alice, shop, settings
):
    settings.PAAS_LOG_REPLAY_LINES = 5  # fewer than were written while it was away
    _, _, ws = await watcher("shop", alice)
    await texts_until_replayed(ws)
    await ingest(shop.pk, *[line(f"before {i}", at=i) for i in range(3)])
    last = (await next_lines(ws))["lines"][-1][0]
    await ws.disconnect()

    await ingest(shop.pk, *[line(f"away {i}", at=10 + i) for i in range(20)])
    _, _, again = await watcher("shop", alice, query=f"since={last}")
    messages = await until(again, "replayed")
    assert messages[0]["resumed"] is True
    assert [r[6] for m in messages if m["type"] == "lines" for r in m["lines"]] == [
        f"away {i}" for i in range(20)
    ]
    assert messages[-1]["upto"] == 23
    await ingest(shop.pk, line("live again", at=40))
    assert [r[6] for r in (await next_lines(again))["lines"]] == ["live again"]
    await again.disconnect()


async def test_a_resume_longer_than_the_buffer_keeps_the_newest_and_says_how_many_dropped(
    alice, shop, settings
):
    settings.PAAS_LOG_CONSUMER_BUFFER = 100
    await ingest(shop.pk, *[line(f"away {i}", at=i) for i in range(130)])
    _, _, ws = await watcher("shop", alice, query="since=0")
    texts, dropped = await received_texts(ws, 130)
    assert (texts, dropped) == ([f"away {i}" for i in range(30, 130)], 30)
    await ws.disconnect()


async def test_a_cursor_beyond_the_log_starts_afresh_and_a_bad_one_is_refused(alice, shop):
    await ingest(shop.pk, line("only line"))
    _, _, ws = await watcher("shop", alice, query="since=999")
    messages = await until(ws, "replayed")
    assert messages[0]["resumed"] is False
    assert [r[6] for m in messages if m["type"] == "lines" for r in m["lines"]] == ["only line"]
    await ws.disconnect()
    connected, code, _ = await watcher("shop", alice, query="since=-1")
    assert (connected, code) == (False, 4400)


async def test_lines_whose_batch_never_came_are_read_from_the_database_in_order(alice, shop):
    _, _, everything = await watcher("shop", alice)
    _, _, workers = await watcher("shop", alice, query="process=worker")
    await texts_until_replayed(everything)
    await texts_until_replayed(workers)
    # Stored while Redis was away: the publication was lost.
    lost = [line(f"lost {i}", at=i, process="worker" if i % 2 else "web") for i in range(6)]
    await sync_to_async(logs_store)(lines_by_app={shop.pk: lost})
    await ingest(shop.pk, line("published", at=10, process="worker"))

    texts, dropped = await received_texts(everything, 7)
    assert (texts, dropped) == ([*(f"lost {i}" for i in range(6)), "published"], 0)
    texts, dropped = await received_texts(workers, 4)
    assert (texts, dropped) == (["lost 1", "lost 3", "lost 5", "published"], 0)
    # The late publication of a batch already read from the database is not shown again.
    await get_channel_layer(LAYER).group_send(
        app_logs_group(shop.pk),
        {"type": "logs.batch", "first": 1, "last": 6, "rows": "[]", "sent_at": time.time()},
    )
    await ingest(shop.pk, line("next", at=20, process="worker"))
    assert [r[6] for r in (await next_lines(everything))["lines"]] == ["next"]
    assert [r[6] for r in (await next_lines(workers))["lines"]] == ["next"]
    await everything.disconnect()
    await workers.disconnect()
