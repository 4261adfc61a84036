"""A follow's history: read a block at a time from the log files as they
were when the follow began, beneath the logs directory with no link
followed (runtime_agent/containers/log_history.py)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os

import pytest

from runtime_agent import wire
from runtime_agent.containers import log_history
from runtime_agent.containers.log_history import StoredHistory, open_stored
from runtime_agent.containers.log_records import line_json, rfc3339
from runtime_agent.containers.logs import LogConfig, LogStreams, LogTailer, open_raw_fds
from tests.support.processes import async_wait_until

NAMES = ["log.jsonl.2", "log.jsonl.1", "log.jsonl"]


def numbers(chunks: list[bytes]) -> list[int]:
    return [json.loads(raw)["n"] for chunk in chunks for raw in chunk.splitlines()]


async def take_all(follow, most: int = 2000) -> list[bytes]:
    chunks = []
    while chunk := await follow.chunk(most, timeout=0):
        chunks.append(chunk)
    return chunks


async def test_a_link_in_place_of_a_rotated_log_is_refused_not_read(tmp_path, caplog):
    logs = tmp_path / "logs"
    out, err = open_raw_fds(logs)
    tailer = LogTailer("web", logs, LogConfig(poll_s=3600))
    os.write(out, b"mine\n")
    tailer.pump()
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text(line_json(wire.LogLine(rfc3339(1.0), "stdout", "SECRET", 1)))
    (logs / "log.jsonl.1").symlink_to(outside)
    try:
        with caplog.at_level(logging.ERROR, logger="runtime_agent.logs"):
            assert [line.line for line in tailer.read()] == ["mine"]
            follow = tailer.follow()
            chunk = await follow.chunk(10, timeout=0)
            follow.close()
        assert [json.loads(raw)["line"] for raw in (chunk or b"").splitlines()] == ["mine"]
        assert "log.jsonl.1 is a link, not a log file: refused, not read" in caplog.text
    finally:
        os.close(out)
        os.close(err)


def test_a_fifo_in_place_of_a_log_is_refused_without_blocking(tmp_path, caplog):
    logs = tmp_path / "logs"
    logs.mkdir()
    os.mkfifo(logs / "log.jsonl.1")
    with caplog.at_level(logging.ERROR, logger="runtime_agent.logs"):
        assert open_stored(logs, NAMES) == []
    assert "log.jsonl.1 is not a regular file" in caplog.text


def write_logs(logs, lines_per_file: int) -> list[wire.LogLine]:
    """Three log files of numbered lines one second apart, with an older
    agent's line and records torn by a power cut among them: in log.jsonl.1
    the piece the next append went on from (that record is lost with it),
    and log.jsonl's last record cut short."""
    logs.mkdir()
    written, n = [], 0
    for name in NAMES:
        data = []
        for _ in range(lines_per_file):
            n += 1
            line = wire.LogLine(rfc3339(1000.0 + n), "stdout", f"line {n} " + "x" * (n % 40), n)
            written.append(line)
            data.append(line_json(line))
        torn = line_json(wire.LogLine(rfc3339(1000.0 + n), "stdout", "torn", 0))[:20]
        if name == "log.jsonl.1":
            data[0] = torn + data[0]
            n += 1
            when = rfc3339(1000.0 + n)
            old = {"time": when, "stream": "stderr", "line": "older", "n": n}
            written.append(wire.LogLine(when, "stderr", "older", n))
            data.append(json.dumps(old) + "\n")  # as agents before compact records wrote it
        if name == "log.jsonl":
            data.append(torn)
        (logs / name).write_text("".join(data))
    return written


@pytest.mark.parametrize("tail", [None, 0, 1, 7, 99, 100, 101, 250, 10_000])
@pytest.mark.parametrize("since", [None, 0.0, 1001.0, 1050.5, 1150.0, 1299.0, 9999.0])
def test_tail_and_since_pick_the_same_lines_whatever_the_blocks(tmp_path, monkeypatch, tail, since):
    # Small blocks: the start is looked for, and lines read, across many
    # block and file boundaries.
    monkeypatch.setattr(log_history, "BLOCK", 700)
    written = write_logs(tmp_path / "logs", 100)
    valid = [line for line in written if line.n != 101]  # joined to the torn piece
    wanted = [line for line in valid if since is None or line.time >= rfc3339(since)]
    wanted = wanted[max(0, len(wanted) - tail) :] if tail is not None else wanted
    history = StoredHistory(open_stored(tmp_path / "logs", NAMES), tail, since)
    got = [json.loads(record) for record in history.read_all()]
    assert [(g["n"], g["line"]) for g in got] == [(w.n, w.line) for w in wanted]


async def test_history_and_live_lines_are_each_sent_once_across_rotations(tmp_path):
    # The history is what the files held when the follow began; lines stored
    # while it is read rotate those files away (the oldest deleted), yet
    # every line comes once, in order: the fds opened at the follow keep them.
    logs = tmp_path / "logs"
    out, err = open_raw_fds(logs)
    tailer = LogTailer("web", logs, LogConfig(poll_s=3600, max_bytes=64 * 1024, max_files=3))
    line = b"%08d " + b"y" * 90 + b"\n"
    try:
        os.write(out, b"".join(line % i for i in range(1500)))
        while tailer.pump():
            pass
        first_kept = tailer.read(tail=None)[0].n
        follow = tailer.follow()
        chunks = [await follow.chunk(200, timeout=0)]
        written = 1500
        for _ in range(6):  # each batch rotates the log once or more
            os.write(out, b"".join(line % i for i in range(written, written + 700)))
            written += 700
            while tailer.pump():
                pass
            chunks.append(await follow.chunk(200, timeout=0))
        chunks += await take_all(follow, 200)
        follow.close()
    finally:
        os.close(out)
        os.close(err)
    assert numbers([c for c in chunks if c]) == list(range(first_kept, written + 1))


async def test_another_containers_live_line_comes_while_a_long_history_is_sent(tmp_path):
    # A follower back after falling behind asks for the whole log: read in
    # one step it held the loop (0.3-0.5 s for 50 MiB), and every other
    # container's lines waited. Here the other container's line, written
    # before the long follow begins, reaches its follower before the
    # history's last chunk. (poll_s an hour: only its inotify wake brings it.)
    cfg = LogConfig(poll_s=3600)
    long = LogTailer("long", tmp_path / "long", cfg)
    long_out, long_err = open_raw_fds(tmp_path / "long")
    line = b"%08d " + b"z" * 90 + b"\n"
    total = 60_000
    os.write(long_out, b"".join(line % i for i in range(total)))
    while long.pump():
        pass
    streams = LogStreams(cfg)
    streams.connect()
    streams.open("quiet", tmp_path / "quiet")
    quiet = streams.lines("quiet", 0, None, True)
    quiet_out, quiet_err = open_raw_fds(tmp_path / "quiet")
    events: list[str] = []

    async def watch_quiet() -> None:
        await anext(quiet)
        events.append("quiet line")

    watcher = asyncio.create_task(watch_quiet())
    try:
        await asyncio.sleep(0)  # waiting for its line
        os.write(quiet_out, b"live\n")
        history = long.follow()
        sent = 0
        while sent < total:
            sent += (await history.chunk(2000, timeout=0) or b"").count(b"\n")
            events.append("history chunk")
        history.close()
        await asyncio.wait_for(watcher, 30)
    finally:
        watcher.cancel()
        await streams.close_all()
        await long.close()
        for fd in (long_out, long_err, quiet_out, quiet_err):
            os.close(fd)
    assert events.count("history chunk") >= total // 2000
    assert "quiet line" in events[:-1]  # before the history's last chunk


# log.jsonl.1 begins with the torn record: its age is not known, so
# log.jsonl.2 is kept for a since= in log.jsonl.1.
@pytest.mark.parametrize(("since", "kept"), [(1250.0, 1), (1203.0, 1), (1150.0, 3), (None, 3)])
def test_a_since_history_keeps_open_only_the_files_it_needs(tmp_path, since, kept):
    # A follower reconnecting to every container at once asks each with
    # since=: one fd per rotated file each, held while the history is sent,
    # would be thousands.
    write_logs(tmp_path / "logs", 100)
    before = len(os.listdir("/proc/self/fd"))
    history = StoredHistory(open_stored(tmp_path / "logs", NAMES), None, since)
    try:
        assert len(os.listdir("/proc/self/fd")) - before == kept
    finally:
        history.close()
    assert len(os.listdir("/proc/self/fd")) == before


# --- writes: a link in place of a file the agent writes is refused too --------------


def test_a_link_in_place_of_a_raw_file_is_neither_read_nor_punched(tmp_path, caplog):
    logs = tmp_path / "logs"
    logs.mkdir()
    outside = tmp_path / "host-file"
    outside.write_bytes(b"not the container's output\n" * 20_000)
    before = (outside.read_bytes(), outside.stat().st_blocks)
    (logs / "stdout.raw").symlink_to(outside)
    tailer = LogTailer("web", logs, LogConfig(poll_s=3600, backlog_bytes=64 * 1024))
    with caplog.at_level(logging.ERROR, logger="runtime_agent.logs"):
        assert tailer.pump() == []
        tailer.enforce_backlog()  # past the cap, were it followed: a hole punched
        assert tailer.pump() == []
    assert (outside.read_bytes(), outside.stat().st_blocks) == before
    assert caplog.text.count("stdout.raw is a link, not an output file: refused") == 1


def test_a_link_in_place_of_log_jsonl_is_not_written_through(tmp_path):
    logs = tmp_path / "logs"
    out, err = open_raw_fds(logs)
    outside = tmp_path / "host-file"
    outside.write_bytes(b"kept\n")
    (logs / "log.jsonl").symlink_to(outside)
    tailer = LogTailer("web", logs, LogConfig(poll_s=3600))
    try:
        os.write(out, b"waits\n")
        with pytest.raises(OSError) as refused:
            tailer.pump()
        assert refused.value.errno == errno.ELOOP
        assert outside.read_bytes() == b"kept\n"
        (logs / "log.jsonl").unlink()
        assert [line.line for line in tailer.pump()] == ["waits"]  # not lost meanwhile
    finally:
        os.close(out)
        os.close(err)


def test_a_containers_raw_file_is_not_created_through_a_dangling_link(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "stderr.raw").symlink_to(tmp_path / "made-elsewhere")
    with pytest.raises(OSError) as refused:
        open_raw_fds(logs)
    assert refused.value.errno == errno.ELOOP
    assert not (tmp_path / "made-elsewhere").exists()


async def test_a_tailer_that_keeps_failing_says_so_once_and_again_when_its_lines_flow(
    tmp_path, caplog
):
    # A link in log.jsonl's place fails every turn: one error in the agent's
    # log for the episode, not a traceback every poll, and the lines flow
    # once it is gone.
    logs = tmp_path / "logs"
    out, err = open_raw_fds(logs)
    (logs / "log.jsonl").symlink_to(tmp_path / "host-file")
    tailer = LogTailer("web", logs, LogConfig(poll_s=0.001))
    try:
        with caplog.at_level(logging.WARNING, logger="runtime_agent.logs"):
            os.write(out, b"waits\n")
            tailer.start()
            await async_wait_until(lambda: tailer.failures.tries >= 5, what="5 failed turns")
            (logs / "log.jsonl").unlink()
            await async_wait_until(lambda: tailer.failures.tries == 0, what="a turn that works")
        assert [line.line for line in tailer.read()] == ["waits"]
        assert caplog.text.count("tailing the logs of web failed") == 1
        assert "logs of web flow again (after " in caplog.text
    finally:
        await tailer.close()
        os.close(out)
        os.close(err)
