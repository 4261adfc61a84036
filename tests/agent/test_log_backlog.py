"""A container that floods stdout cannot fill the host's disk: a real runc
container writes as fast as it can (``yes``), and the raw file's allocated
blocks stay under the unread-backlog cap plus a stated slack the whole time,
a notice says what was dropped, and a line written after the flood arrives."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from runtime_agent.containers.logs import PUNCH_EVERY
from runtime_agent.wire import ContainerState as S
from runtime_agent.wire import LogLine
from tests.support.agent_harness import AgentUnderTest, LocalImages, request, unique
from tests.support.processes import async_wait_until

pytestmark = pytest.mark.root

CAP = 1024 * 1024
# A file passes the cap by what the writer adds between two checks: its rate
# (busybox yes here: ~370 MB/s) times the watchdog's interval (20 ms) plus any
# time the agent's process is not scheduled at all (the flood itself keeps
# both cores of a test machine busy: watchdog gaps up to ~130 ms, peaks of 20-54 MB were
# seen), plus what waits to be punched and a page. 128 MiB allows ~350 ms of
# stall at that rate; without the cap the backlog grows to most of the
# flood (the agent reads ~50 MB/s at best), ~900 MB.
SLACK = 128 * 1024 * 1024 + PUNCH_EVERY + 4096
FLOOD_BYTES = 1024 * 1024 * 1024
FLOOD = (
    f"yes 'flooding the log with one line after another' | head -c {FLOOD_BYTES};"
    " echo; echo after-the-flood"
)


class BlockSampler:
    """Samples a file's allocated bytes (st_blocks x 512) in a thread of its
    own, so the samples go on whatever the event loop is doing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            try:
                self.samples.append(os.stat(self.path).st_blocks * 512)
            except FileNotFoundError:
                continue

    def __enter__(self) -> BlockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_a_flooding_container_keeps_its_raw_log_under_the_backlog_cap(
    tmp_agent_root: Path, tmp_path: Path
) -> None:
    agent = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"), log_backlog_bytes=CAP)
    await agent.setup()
    try:
        manager = await agent.manager()
        name = unique()
        raw = agent.config.containers_dir / name / "logs" / "stdout.raw"
        with BlockSampler(raw) as sampler:
            started = time.monotonic()
            await manager.create(request(name, ["sh", "-c", FLOOD]))
            await async_wait_until(
                lambda: manager.inspect(name).state == S.EXITED,
                timeout_s=120,
                what="the flood to end",
            )
            flood_s = time.monotonic() - started

            async def arrived() -> list[LogLine] | None:
                got = [ln async for ln in manager.logs(name)]
                return got if any(ln.line == "after-the-flood" for ln in got) else None

            got = await async_wait_until(arrived, timeout_s=60, what="the line after the flood")
        written = raw.stat().st_size
    finally:
        await agent.cleanup()
    assert written >= FLOOD_BYTES  # the flood really went through the raw file
    assert len(sampler.samples) > 10
    peak = max(sampler.samples)
    rate = FLOOD_BYTES / flood_s
    print(f"raw file peak {peak} bytes allocated (cap {CAP}), flood {rate / 1e6:.0f} MB/s")
    assert peak <= CAP + SLACK
    # (log.jsonl's own rotation keeps only its newest 50 MiB: not every notice is left.)
    notices = [ln.line for ln in got if ln.line.startswith("[paas] ")]
    assert notices and all(" bytes of stdout were dropped here" in line for line in notices)
    assert got[-1].line == "after-the-flood"
    assert [ln.n for ln in got] == list(range(got[0].n, got[-1].n + 1))  # no gap in what is kept


async def test_a_backlog_written_while_the_agent_was_down_is_cut_to_the_cap_when_it_starts(
    tmp_agent_root: Path, tmp_path: Path
) -> None:
    # Nothing holds the cap while the agent is down: the container writes
    # 8x the cap then. The next agent cuts it back as it opens the
    # container's logs (before re-adopting it, before its API answers), and
    # the first line it reads is the notice of what was dropped.
    agent = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"), log_backlog_bytes=CAP)
    await agent.setup()
    flood = 8 * CAP
    script = (
        f"trap 'yes while-the-agent-is-down | head -c {flood}; echo; echo after-the-flood' USR1;"
        " echo ready; while true; do sleep 0.1; done"
    )
    try:
        first = await agent.manager()
        name = unique()
        raw = agent.config.containers_dir / name / "logs" / "stdout.raw"
        info = await first.create(request(name, ["sh", "-c", script]))

        async def lines() -> list[LogLine]:
            return [ln async for ln in agent.managers[-1].logs(name)]

        async def read(text: str) -> list[LogLine] | None:
            got = await lines()
            return got if got and got[-1].line == text else None

        await async_wait_until(lambda: read("ready"), timeout_s=30, what="the first line read")
        await first.shutdown()  # the agent goes down; the container runs on
        assert info.pid
        os.kill(info.pid, signal.SIGUSR1)
        written = len(b"ready\n") + flood + len(b"\nafter-the-flood\n")
        await async_wait_until(
            lambda: raw.stat().st_size >= written, timeout_s=60, what="the flood written"
        )
        assert raw.stat().st_blocks * 512 > 4 * CAP  # nothing held it meanwhile
        await agent.manager()  # the next agent starts
        assert raw.stat().st_blocks * 512 <= CAP + PUNCH_EVERY + 4096
        got = await async_wait_until(
            lambda: read("after-the-flood"), timeout_s=30, what="the rest read"
        )
    finally:
        await agent.cleanup()
    assert got[0].line == "ready"
    notice = got[1].line
    assert notice.startswith("[paas] ") and " bytes of stdout were dropped here" in notice
    assert int(notice.split()[1]) >= flood - CAP // 2
    kept = [ln.line for ln in got[2:-1]]  # the newest half of the cap, from a line start
    assert kept[0] == "while-the-agent-is-down" and len(kept) * 24 >= CAP // 2 - 24
    assert all(line and "while-the-agent-is-down".startswith(line) for line in kept)  # head -c
    assert [ln.n for ln in got] == list(range(1, len(got) + 1))
