"""The follower's queue to its one writer: a chatty source's backlog never
stands in front of a quiet source's lines, and a source out of room waits
(its agent keeps the lines) instead of the queue growing."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from paas.applications.services import app_create
from paas.logs.follower import FairQueue, Follower, Item
from paas.logs.models import LogLine
from paas.logs.services import LAYER, log_cursor_position
from tests.web.logs.support import line


def chunk(source: str, lines: int) -> list[Item]:
    return [Item(1, "", [line(f"{source} {i}") for i in range(lines)], source, {})]


def sources(items: list[Item]) -> list[str]:
    return [i.cursor_key for i in items]


async def test_a_quiet_source_goes_into_the_next_store_past_a_chatty_backlog():
    queue = FairQueue(per_source=3)
    for _ in range(3):
        await queue.put("chatty", chunk("chatty", 1000))
    blocked = asyncio.create_task(queue.put("chatty", chunk("chatty", 1000)))
    await asyncio.sleep(0)  # let it run up to its wait
    assert not blocked.done()  # out of room: the chatty source waits, nothing grows
    await queue.put("quiet", chunk("quiet", 1))

    # One chunk of each waiting source in turn, up to the batch size: the
    # quiet line is in the first store, not behind the chatty backlog.
    assert sources(await queue.take(max_lines=1500)) == ["chatty", "quiet", "chatty"]
    await asyncio.wait_for(blocked, 5)  # the take made room
    assert sources(await queue.take(max_lines=1500)) == ["chatty", "chatty"]
    assert not queue.turns


async def test_each_source_keeps_its_order_and_a_take_waits_for_lines():
    queue = FairQueue(per_source=8)
    waiting = asyncio.create_task(queue.take(max_lines=100))
    await asyncio.sleep(0)
    assert not waiting.done()
    await queue.put("a", chunk("a", 1))
    assert sources(await asyncio.wait_for(waiting, 5)) == ["a"]
    for n in range(3):
        await queue.put("a", [Item(1, "", [line(f"a{n}")], "a", {"n": n})])
        await queue.put("b", [Item(1, "", [line(f"b{n}")], "b", {"n": n})])
    taken = await queue.take(max_lines=100)
    assert [(i.cursor_key, i.position["n"]) for i in taken] == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("b", 2),
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_source_followed_anew_reads_its_cursor_only_once_its_queued_lines_are_stored(
    alice,
):
    app = await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="again")
    follower = Follower(layer=get_channel_layer(LAYER))
    writer = asyncio.create_task(follower._write_loop())
    try:
        # What the source's old task had queued when it ended, up to line 3.
        lines = [line(f"queued {i}", at=i) for i in range(3)]
        await follower.queue.put("agent:x:c", [Item(app.pk, "", lines, "agent:x:c", {"n": 3})])
        await asyncio.wait_for(follower.settled("agent:x:c"), 30)
        # So the new task's cursor is the one after those lines, not before them.
        position = await sync_to_async(log_cursor_position)(key="agent:x:c")
        assert position == {"n": 3}
        stored = await sync_to_async(LogLine.objects.filter(app=app).count)()
        assert stored == 3
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        follower.db.shutdown(wait=True)
