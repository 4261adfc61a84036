"""The log tailer: raw stdout/stderr files -> timestamped, stream-tagged,
rotated JSONL, with tail/since/follow and an optional push to a real Redis.

The raw files are written here the way a container writes them (O_APPEND
fds); the container side is covered in test_containers_lifecycle.py."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from typing import Any

import pytest

from runtime_agent import wire
from runtime_agent.containers import log_records
from runtime_agent.containers.logs import (
    MAX_LINE,
    PUNCH_EVERY,
    READ_CHUNK,
    REDIS_STREAM_PREFIX,
    LogConfig,
    LogStreams,
    LogTailer,
    connect_redis,
    open_raw_fds,
    parse_time,
    rfc3339,
)
from runtime_agent.host.errors import UnsafePath
from tests.support.processes import async_wait_until, wait_until
from tests.support.redis_server import run_redis

FAST = LogConfig(poll_s=0.01)


@pytest.fixture
def log_dir(tmp_path):
    return tmp_path / "logs"


@pytest.fixture
def fds(log_dir):
    out, err = open_raw_fds(log_dir)
    yield out, err
    os.close(out)
    os.close(err)


def lines_of(records):
    return [(r.stream, r.line) for r in records]


def test_it_tags_each_line_with_its_stream_and_a_utc_time(log_dir, fds):
    out, err = fds
    os.write(out, b"hello\nworld\n")
    os.write(err, b"oops\n")
    before = time.time()
    tailer = LogTailer("web", log_dir, FAST)
    tailer.pump()
    got = tailer.read()
    assert lines_of(got) == [("stdout", "hello"), ("stdout", "world"), ("stderr", "oops")]
    assert got[0].time.endswith("Z") and len(got[0].time) == len("2026-11-30T08:42:59.123456Z")
    assert abs(parse_time(got[0].time) - before) < 5


def test_a_partial_line_waits_for_its_newline_unless_the_writer_is_gone(log_dir, fds):
    out, _ = fds
    tailer = LogTailer("web", log_dir, FAST)
    os.write(out, b"half")
    assert tailer.pump() == []
    os.write(out, b" and half\nlast words")
    assert lines_of(tailer.pump()) == [("stdout", "half and half")]
    assert lines_of(tailer.pump(final=True)) == [("stdout", "last words")]


def test_a_final_flush_of_a_big_backlog_splits_no_line_at_a_read_boundary(log_dir, fds):
    out, _ = fds
    line = b"y" * 99 + b"\n"
    count = 3 * READ_CHUNK // len(line) + 7  # the backlog spans several reads
    os.write(out, line * count + b"tail")
    tailer = LogTailer("web", log_dir, FAST)
    assert tailer.drain() == count + 1
    assert [len(r.line) for r in tailer.read()] == [99] * count + [4]


def test_a_runaway_line_is_cut_at_the_maximum_length(log_dir, fds):
    out, _ = fds
    os.write(out, b"x" * (MAX_LINE + 10))
    tailer = LogTailer("web", log_dir, FAST)
    got = tailer.pump()
    assert [len(r.line) for r in got] == [MAX_LINE]


def test_tail_returns_the_last_lines(log_dir, fds):
    out, _ = fds
    os.write(out, b"".join(b"line %d\n" % i for i in range(10)))
    tailer = LogTailer("web", log_dir, FAST)
    tailer.pump()
    assert [r.line for r in tailer.read(tail=3)] == ["line 7", "line 8", "line 9"]
    assert tailer.read(tail=0) == []


def test_since_returns_only_lines_at_or_after_the_time(log_dir, fds):
    out, _ = fds
    tailer = LogTailer("web", log_dir, FAST)
    os.write(out, b"old\n")
    tailer.pump()
    old = tailer.read()[-1].time

    def past_old() -> float | None:  # a cutoff after the old line's time
        now = time.time()
        return now if rfc3339(now) > old else None

    cutoff = wait_until(past_old, what="the clock to pass the old line")  # new is stamped later
    os.write(out, b"new\n")
    tailer.pump()
    assert [r.line for r in tailer.read(since=cutoff)] == ["new"]


def test_a_new_tailer_resumes_without_losing_or_repeating_lines(log_dir, fds):
    out, err = fds
    first = LogTailer("web", log_dir, FAST)
    os.write(out, b"one\n")
    os.write(err, b"two\n")
    first.pump()
    os.write(out, b"three\n")  # written while no agent is tailing
    second = LogTailer("web", log_dir, FAST)
    second.pump()
    assert lines_of(second.read()) == [("stdout", "one"), ("stderr", "two"), ("stdout", "three")]


def test_offsets_are_overwritten_in_place_and_a_new_tailer_resumes_from_them(log_dir, fds):
    # One pwrite per batch, not a temp file renamed over the old one (that
    # rename was a third of the agent's loop under a flood on ext4).
    out, _ = fds
    (log_dir / "offsets.json").write_text('{"stdout": 0, "stderr": 0, "lines": 0}')  # as before
    tailer = LogTailer("web", log_dir, FAST)
    os.write(out, b"one\n")
    tailer.pump()
    inode = (log_dir / "offsets.json").stat().st_ino
    os.write(out, b"two\n")
    tailer.pump()
    assert (log_dir / "offsets.json").stat().st_ino == inode
    saved = json.loads((log_dir / "offsets.json").read_bytes())
    assert (saved["stdout"], saved["lines"]) == (8, 2)
    os.write(out, b"three\n")
    again = LogTailer("web", log_dir, FAST)
    assert [(r.line, r.n) for r in again.pump()] == [("three", 3)]


def test_a_link_in_place_of_the_offsets_file_is_refused_not_read(log_dir, fds, tmp_path):
    # The offsets say where each stream resumes; numbers read through a link
    # from another file would skip or repeat lines.
    outside = tmp_path / "outside.json"
    outside.write_text('{"stdout": 3, "stderr": 0, "lines": 40}')
    (log_dir / "offsets.json").symlink_to(outside)
    with pytest.raises(UnsafePath, match="is a link"):
        LogTailer("web", log_dir, FAST)
    assert outside.read_text() == '{"stdout": 3, "stderr": 0, "lines": 40}'


def test_rotation_caps_each_file_and_keeps_only_max_files(log_dir, fds):
    out, _ = fds
    cfg = LogConfig(max_bytes=4096, max_files=3, poll_s=0.01)
    tailer = LogTailer("web", log_dir, cfg)
    for i in range(200):
        os.write(out, b"line %04d %s\n" % (i, b"p" * 40))
        tailer.pump()
    names = sorted(p.name for p in log_dir.iterdir() if p.name.startswith("log.jsonl"))
    assert names == ["log.jsonl", "log.jsonl.1", "log.jsonl.2"]
    assert all((log_dir / n).stat().st_size <= 4096 for n in names)
    kept = [r.line[:9] for r in tailer.read()]
    assert kept[-1] == "line 0199"
    assert kept == sorted(kept)  # oldest first, no gaps inside what is kept
    assert len(kept) < 200  # the oldest were dropped
    # A tail longer than the newest file reads on into the rotated one.
    newest = len((log_dir / "log.jsonl").read_text().splitlines())
    tail = [r.line[:9] for r in tailer.read(tail=newest + 5)]
    assert tail == [f"line {i:04d}" for i in range(200 - newest - 5, 200)]


def test_lines_are_numbered_so_a_reader_sees_what_rotation_dropped(log_dir, fds):
    out, err = fds
    cfg = LogConfig(max_bytes=4096, max_files=2, poll_s=0.01)
    tailer = LogTailer("web", log_dir, cfg)
    for i in range(100):
        os.write(out if i % 2 else err, b"line %04d %s\n" % (i, b"p" * 40))
        tailer.pump()
    kept = tailer.read()
    assert [r.n for r in kept] == list(range(kept[0].n, 101))  # 1, 2, 3... no gap inside
    assert kept[0].n > 1  # lines 1 .. n-1 were rotated away: a reader can count them
    assert all(r.line.startswith(f"line {r.n - 1:04d}") for r in kept)
    # The numbering goes on in a new tailer (an agent restart), never starts over.
    os.write(out, b"after a restart\n")
    again = LogTailer("web", log_dir, cfg)
    again.pump()
    assert again.read(tail=1)[0].n == 101


def test_consumed_raw_bytes_are_freed_from_disk(log_dir, fds):
    out, _ = fds
    tailer = LogTailer("web", log_dir, FAST)
    chunk = b"y" * 1023 + b"\n"
    for _ in range(4 * PUNCH_EVERY // len(chunk)):
        os.write(out, chunk)
    os.fsync(out)
    raw = log_dir / "stdout.raw"
    before = raw.stat()
    while tailer.pump():
        pass
    after = raw.stat()
    assert after.st_size == before.st_size  # offsets stay valid for the writer
    assert after.st_blocks * 512 < 8192 < before.st_blocks * 512


async def test_follow_gives_history_then_new_lines_and_ends_on_close(log_dir, fds):
    out, err = fds
    tailer = LogTailer("web", log_dir, FAST)
    os.write(out, b"before\n")
    tailer.pump()
    tailer.start()
    got = []

    async def consume():
        async for line in tailer.follow(tail=10):
            got.append((line.stream, line.line))

    task = asyncio.create_task(consume())
    await async_wait_until(lambda: len(got) == 1, what="the history line")
    os.write(err, b"after\n")
    await async_wait_until(lambda: len(got) == 2, what="the new line")
    await tailer.close()
    await asyncio.wait_for(task, 2)
    assert got == [("stdout", "before"), ("stderr", "after")]


async def test_a_cancelled_follower_is_forgotten(log_dir, fds):
    tailer = LogTailer("web", log_dir, FAST)
    tailer.start()

    async def consume():
        async for _ in tailer.follow():
            pass

    task = asyncio.create_task(consume())
    await async_wait_until(lambda: len(tailer._followers) == 1, what="the follower subscribed")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tailer._followers == set()
    await tailer.close()


async def test_a_stored_batch_reaches_a_waiting_follower_in_one_step(log_dir, fds):
    # The API's stream waits in batch(); the tailer's store wakes it directly,
    # with no task in between (each would cost a pass of a busy event loop).
    out, _ = fds
    tailer = LogTailer("web", log_dir, LogConfig(poll_s=3600))
    os.write(out, b"old\n")
    tailer.pump()
    follow = tailer.follow(tail=10)
    assert lines_of(await follow.batch(10) or []) == [("stdout", "old")]
    waiter = asyncio.create_task(follow.batch(2))
    await asyncio.sleep(0)  # the waiter is waiting
    os.write(out, b"a\nb\nc\n")
    tailer.pump()
    await asyncio.sleep(0)
    assert waiter.done()
    assert lines_of(waiter.result() or []) == [("stdout", "a"), ("stdout", "b")]
    assert lines_of(await follow.batch(10) or []) == [("stdout", "c")]
    assert await follow.batch(10, timeout=0) == []  # nothing new: the stream checks its client
    await tailer.close()
    assert await follow.batch(10) is None


async def test_a_followers_backlog_is_strings_not_objects_per_line(log_dir, fds):
    # A follower behind a flood holds up to FOLLOW_QUEUE_MAX lines: as line
    # objects they were what made the collector's full passes stop the agent's
    # loop for 100-170 ms; records (strings) are not walked at all.
    def line_objects() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, wire.LogLine))

    out, _ = fds
    tailer = LogTailer("web", log_dir, FAST)
    follow = tailer.follow()
    before = line_objects()  # whatever earlier tests left for the collector
    os.write(out, b"".join(b"line %d\n" % i for i in range(5000)))
    while tailer.pump():
        pass
    assert line_objects() - before < 100
    got = await follow.batch(10_000)
    assert [r.line for r in got or []] == [f"line {i}" for i in range(5000)]
    follow.close()


async def test_a_follows_history_is_sent_as_stored_without_parsing(log_dir, fds, monkeypatch):
    # A follower back after falling behind a flood asks for 100k+ lines with
    # since=: parsing each into an object held the loop for 100s of ms.
    out, _ = fds
    tailer = LogTailer("web", log_dir, FAST)
    os.write(out, b"".join(b"old %d\n" % i for i in range(3000)))
    while tailer.pump():
        pass
    since = time.time()
    os.write(out, b"".join(b"new %d\n" % i for i in range(3000)))
    while tailer.pump():
        pass
    stored = (log_dir / "log.jsonl").read_bytes().splitlines(keepends=True)

    def no_parsing(raw):
        raise AssertionError(f"parsed {raw!r}")

    monkeypatch.setattr(log_records, "_parse", no_parsing)
    follow = tailer.follow(since=since)
    chunks = []  # the history comes a block at a time (log_history.py)
    while chunk := await follow.chunk(10_000, timeout=0):
        chunks.append(chunk)
    assert b"".join(chunks) == b"".join(stored[3000:])
    follow.close()


async def test_a_follow_reads_an_older_agents_log_and_skips_a_torn_line(log_dir):
    # log.jsonl as agents before compact records wrote it (json.dumps with
    # spaces), ending in a line torn by a crash.
    log_dir.mkdir()
    old = [{"time": rfc3339(1000.0 + i), "stream": "stdout", "line": f"l{i}", "n": i + 1}
           for i in range(4)]  # fmt: skip
    data = "".join(json.dumps(d) + "\n" for d in old) + '{"time": "2026'
    (log_dir / "log.jsonl").write_text(data)
    tailer = LogTailer("web", log_dir, FAST)
    follow = tailer.follow(since=1002.0)
    got = await follow.batch(10, timeout=0)
    assert [(r.line, r.n) for r in got or []] == [("l2", 3), ("l3", 4)]
    follow.close()


async def test_a_record_torn_by_a_power_cut_is_skipped_even_with_lines_after_it(log_dir, fds):
    # The cut left half a record; the next agent's append went on from it on
    # the same line: that line is not JSON and is not sent (the record
    # joined to the torn piece is lost with it); the others are.
    out, _ = fds
    tailer = LogTailer("web", log_dir, FAST)
    os.write(out, b"before\n")
    tailer.pump()
    whole = (log_dir / "log.jsonl").read_bytes()
    (log_dir / "log.jsonl").write_bytes(whole + whole[: len(whole) // 2])
    os.write(out, b"after\n")
    tailer.pump()
    follow = tailer.follow()
    chunk = await follow.chunk(10, timeout=0)
    assert [json.loads(raw)["line"] for raw in (chunk or b"").splitlines()] == ["before"]
    follow.close()


async def test_a_follower_too_far_behind_gets_what_it_had_then_ends(log_dir, fds, monkeypatch):
    monkeypatch.setattr("runtime_agent.containers.log_records.FOLLOW_QUEUE_MAX", 3)
    out, _ = fds
    tailer = LogTailer("web", log_dir, LogConfig(poll_s=3600))
    follow = tailer.follow()
    os.write(out, b"1\n2\n")
    tailer.pump()
    os.write(out, b"3\n4\n")
    tailer.pump()  # 4 lines waiting would pass the cap: cut off
    assert tailer._followers == set()
    assert [ln.line async for ln in follow] == ["1", "2"]
    await tailer.close()


def test_rfc3339_strings_sort_like_the_times():
    assert rfc3339(1.5) < rfc3339(10.25) < rfc3339(1e9)
    assert parse_time(rfc3339(1234.5)) == 1234.5


async def test_lines_are_pushed_to_a_redis_stream(tmp_path, log_dir, fds):
    out, err = fds
    with run_redis(tmp_path / "redis") as url:
        redis = connect_redis(url)
        assert redis is not None
        try:
            tailer = LogTailer("web", log_dir, LogConfig(poll_s=0.01, redis_maxlen=100), redis)
            tailer.start()
            os.write(out, b"to redis\n")
            os.write(err, b"errors too\n")

            async def both() -> list[Any] | None:
                entries = await redis.xrange(REDIS_STREAM_PREFIX + "web")
                return entries if len(entries) == 2 else None

            entries = await async_wait_until(both, what="two stream entries")
            await tailer.close()
        finally:
            await redis.aclose()
    got = sorted((f[b"stream"], f[b"line"]) for _, f in entries)
    assert got == [(b"stderr", b"errors too"), (b"stdout", b"to redis")]


async def test_a_redis_outage_does_not_stop_the_log_file(tmp_path, log_dir, fds):
    out, _ = fds
    with run_redis(tmp_path / "redis") as url:
        pass  # started and stopped: nothing listens there any more
    redis = connect_redis(url)
    assert redis is not None
    try:
        tailer = LogTailer("web", log_dir, FAST, redis)
        tailer.start()
        os.write(out, b"kept on disk\n")
        await async_wait_until(tailer.read, what="the line on disk")
        await tailer.close()
    finally:
        await redis.aclose()
    assert [r.line for r in tailer.read()] == ["kept on disk"]


async def test_log_streams_keep_one_tailer_per_container_and_flush_its_last_words(log_dir, fds):
    out, _ = fds
    streams = LogStreams(FAST)
    streams.connect()  # no Redis URL: lines go to the file only
    streams.open("web", log_dir)
    os.write(out, b"first\nno newline at exit")
    streams.flush("web")  # the container exited: the partial line counts too
    got = [(line.stream, line.line) async for line in streams.lines("web", None, None, False)]
    assert got == [("stdout", "first"), ("stdout", "no newline at exit")]
    await streams.close("web")
    with pytest.raises(KeyError):
        streams.lines("web", None, None, False)
    await streams.close_all()


async def test_a_write_wakes_its_tailer_without_waiting_for_the_poll(log_dir):
    # poll_s an hour: only the agent's inotify watch on the raw files can
    # bring these lines, each right after its write. As in the agent, the
    # logs are opened at create, before the process opens its raw files; after
    # close_all a new open watches again.
    streams = LogStreams(LogConfig(poll_s=3600))
    streams.connect()
    fds: list[int] = []
    try:
        for _ in range(2):
            streams.open("web", log_dir)
            follow = streams.lines("web", 0, None, True)  # subscribed before the first pass
            fds = list(open_raw_fds(log_dir))  # the container starts
            for text in ("one", "two"):  # a wake is armed again after each read
                os.write(fds[0], text.encode() + b"\n")
                assert (await asyncio.wait_for(anext(follow), 30)).line == text
            await streams.close_all()
            for fd in fds:
                os.close(fd)
            fds = []
    finally:
        await streams.close_all()
        for fd in fds:
            os.close(fd)


def flood_backlog(fd: int, chunks: int) -> int:
    """Write ``chunks`` reads' worth of numbered lines; returns how many."""
    line = b"%08d " + b"f" * 50 + b"\n"
    count = chunks * READ_CHUNK // len(line % 0)
    os.write(fd, b"".join(line % i for i in range(count)))
    return count


async def test_a_quiet_containers_line_is_read_before_a_floods_backlog_drains(tmp_path):
    # No second poll ever comes (poll_s an hour): the flood's backlog drains
    # through reads that go again at once, and between two of them (a turn
    # of one read: turn_s 0) the quiet container's tailer has its turn.
    cfg = LogConfig(poll_s=3600, turn_s=0)
    flood_out, flood_err = open_raw_fds(tmp_path / "flood")
    quiet_out, quiet_err = open_raw_fds(tmp_path / "quiet")
    total = flood_backlog(flood_out, 6)
    os.write(quiet_out, b"quiet line\n")
    flood = LogTailer("flood", tmp_path / "flood", cfg)
    quiet = LogTailer("quiet", tmp_path / "quiet", cfg)
    flood_got: list[str] = []
    flood_lines_before_quiet: list[int] = []

    async def watch_flood() -> None:
        async for line in flood.follow():
            flood_got.append(line.line)
            if len(flood_got) == total:
                return

    async def watch_quiet() -> None:
        async for _ in quiet.follow():
            flood_lines_before_quiet.append(len(flood_got))
            return

    watchers = [asyncio.create_task(watch_flood()), asyncio.create_task(watch_quiet())]
    await asyncio.sleep(0)  # both subscribed before anything is read
    flood.start()
    quiet.start()
    try:
        await asyncio.wait_for(asyncio.gather(*watchers), 60)
    finally:
        await flood.close()
        await quiet.close()
        for fd in (flood_out, flood_err, quiet_out, quiet_err):
            os.close(fd)
    assert flood_got == [f"{i:08d} " + "f" * 50 for i in range(total)]
    assert flood_lines_before_quiet and flood_lines_before_quiet[0] < total // 2


def numbered_lines(start: int, count: int) -> bytes:
    return b"".join(b"%08d %s\n" % (i, b"b" * 90) for i in range(start, start + count))


def test_unread_output_past_the_backlog_cap_is_dropped_with_a_notice(log_dir, fds):
    out, _ = fds
    cap = 256 * 1024
    cfg = LogConfig(poll_s=0.01, backlog_bytes=cap)
    first = LogTailer("web", log_dir, cfg)
    os.write(out, b"before the flood\n")
    first.pump()
    flood = numbered_lines(0, 20_000)  # ~2 MB unread, eight times the cap
    os.write(out, flood)
    got = first.pump()
    notice = got[0]
    skipped = int(notice.line.split()[1])
    assert notice.line.startswith(f"[paas] {skipped} bytes of stdout were dropped here")
    assert "PAAS_AGENT_LOG_BACKLOG_BYTES" in notice.line
    # The newest half of the cap is kept, from the next line start (lines of 100 bytes).
    assert len(flood) - cap <= skipped <= len(flood) - cap // 2 + 100
    raw = log_dir / "stdout.raw"
    assert raw.stat().st_blocks * 512 <= cap  # the dropped bytes left the disk
    # An agent restart resumes after the skip: the kept lines come once, whole,
    # in order, and the numbering has no gap (the notice took a number).
    del first
    second = LogTailer("web", log_dir, cfg)
    while second.pump():
        pass
    stored = second.read()
    assert stored[0].line == "before the flood" and stored[1] == notice
    kept = [r.line for r in stored[2:]]
    start = int(kept[0][:8])
    assert kept == [f"{i:08d} " + "b" * 90 for i in range(start, 20_000)]
    assert [r.n for r in stored] == list(range(1, len(stored) + 1))


def test_a_skip_is_told_even_when_the_agent_stops_before_writing_the_notice(log_dir, fds):
    out, _ = fds
    cfg = LogConfig(poll_s=0.01, backlog_bytes=256 * 1024)
    first = LogTailer("web", log_dir, cfg)
    os.write(out, numbered_lines(0, 10_000))
    first.enforce_backlog()  # the watchdog skipped; the agent died before the next read
    second = LogTailer("web", log_dir, cfg)
    got = second.pump()
    assert got[0].line.startswith("[paas] ") and got[0].n == 1
    assert "\x00" not in "".join(r.line for r in got)  # never resumed inside a punched hole


async def test_the_watchdog_holds_the_backlog_while_the_loop_never_reads(log_dir, fds):
    # The event loop never runs after the write (waited for without yielding
    # to it: no poll, no inotify wake, nothing read): only the watchdog
    # thread can keep the raw file's blocks under the cap.
    out, _ = fds
    cap = 256 * 1024
    streams = LogStreams(LogConfig(poll_s=3600, backlog_bytes=cap, watch_s=0.01))
    streams.open("web", log_dir)
    try:
        await asyncio.sleep(0)  # the tailer's first (and only) read: nothing yet
        raw = log_dir / "stdout.raw"
        os.write(out, numbered_lines(0, 40_000))  # ~4 MB
        assert raw.stat().st_size > 4 * cap  # (blocks: the watchdog may have cut already)
        wait_until(
            lambda: raw.stat().st_blocks * 512 <= cap, what="the watchdog to drop the backlog"
        )
    finally:
        await streams.close_all()


async def test_the_watchdog_watches_again_after_close_all(log_dir, fds):
    out, _ = fds
    cap = 256 * 1024
    streams = LogStreams(LogConfig(poll_s=3600, backlog_bytes=cap, watch_s=0.01))
    streams.open("web", log_dir)
    await streams.close_all()
    streams.open("web", log_dir)  # the same agent's streams, opened again
    try:
        await asyncio.sleep(0)
        raw = log_dir / "stdout.raw"
        os.write(out, numbered_lines(0, 40_000))
        wait_until(  # without yielding to the loop: the watchdog, not a woken read
            lambda: raw.stat().st_blocks * 512 <= cap, what="the watchdog to drop the backlog"
        )
    finally:
        await streams.close_all()
