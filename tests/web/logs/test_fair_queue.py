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
from paas.logs.services import LAYER, app_logs_group, log_cursor_position
from tests.web.logs.support import line


def chunk(source: str, lines: int, app_id: int = 1) -> list[Item]:
    return [Item(app_id, "", [line(f"{source} {i}") for i in range(lines)], source, {})]


def sources(items: list[Item]) -> list[str]:
    return [i.cursor_key for i in items]


async def test_a_quiet_source_goes_into_the_next_store_past_a_chatty_backlog():
    queue = FairQueue(per_source=3)
    for _ in range(3):
        await queue.put("chatty", chunk("chatty", 1000))
    blocked = asyncio.create_task(queue.put("chatty", chunk("chatty", 1000)))
    await asyncio.sleep(0)  # let it run up to its wait
    assert not blocked.done()  # out of room: the chatty source waits, nothing grows
    await queue.put("quiet", chunk("quiet", 1, app_id=2))

    # One chunk of each waiting source in turn, up to the batch size: the
    # quiet line is in the first store, not behind the chatty backlog.
    assert sources(await queue.take(max_lines=1500)) == ["chatty", "quiet", "chatty"]
    await asyncio.wait_for(blocked, 5)  # the take made room
    assert sources(await queue.take(max_lines=1500)) == ["chatty", "chatty"]
    assert not queue.turns


async def test_a_quiet_app_waits_for_one_chunk_of_a_busy_app_not_one_per_instance():
    queue = FairQueue(per_source=8)
    for k in range(10):  # ten instances of one app, each with a backlog
        await queue.put(f"busy-{k}", chunk(f"busy-{k}", 100, app_id=1))
    await queue.put("quiet", chunk("quiet", 1, app_id=2))

    # Turns go to apps: the quiet app's line is in the first store (with a
    # turn per source it came after one chunk of every busy instance).
    assert sources(await queue.take(max_lines=150)) == ["busy-0", "quiet", "busy-1"]
    # The busy app's instances still take their turns in order.
    assert sources(await queue.take(max_lines=150)) == ["busy-2", "busy-3"]


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


@pytest.mark.django_db(transaction=True)
async def test_the_writer_publishes_a_quiet_apps_line_before_a_busy_apps_backlog(alice):
    """The real writer, SQLite and Redis: a quiet app's line queued behind
    the backlog of a busy app's many instances is stored and published in
    the first store, not after the backlog."""
    create = sync_to_async(app_create)
    busy = await create(user=alice, team=alice.personal_team, name="busy")
    quiet = await create(user=alice, team=alice.personal_team, name="quiet")
    layer = get_channel_layer(LAYER)
    watching = await layer.new_channel()
    for app in (busy, quiet):
        await layer.group_add(app_logs_group(app.pk), watching)
    follower = Follower(layer=layer)
    for k in range(10):  # 10 instances x 2 chunks x 125 lines: 10 stores of 250 lines
        for n in range(2):
            key = f"agent:x:busy-{k}"
            lines = [line(f"busy {k} {n} {i}", at=n) for i in range(125)]
            await follower.queue.put(key, [Item(busy.pk, "", lines, key, {"n": n})])
    await follower.queue.put("agent:x:quiet", chunk("agent:x:quiet", 1, app_id=quiet.pk))
    writer = asyncio.create_task(follower._write_loop())
    try:
        published: list[tuple[int, int]] = []  # (app, last seq) in the order they came
        while not published or published[-1] != (busy.pk, 2500):
            message = await asyncio.wait_for(layer.receive(watching), 30)
            app_id = busy.pk if '"busy ' in message["rows"] else quiet.pk
            published.append((app_id, message["last"]))
        # In the first store, and published before the busy app's 250 lines.
        assert published[0] == (quiet.pk, 1), published
        assert [seq for app, seq in published if app == busy.pk] == list(range(250, 2501, 250))
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        follower.db.shutdown(wait=True)
        for app in (busy, quiet):
            await layer.group_discard(app_logs_group(app.pk), watching)
