"""A container that floods stdout cannot fill the host's disk: a real runc
container writes as fast as it can (``yes``), and the raw file's allocated
blocks stay under the unread-backlog cap plus a stated slack the whole time,
a notice says what was dropped, and a line written after the flood arrives."""

from __future__ import annotations

import os
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
