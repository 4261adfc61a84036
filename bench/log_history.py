"""Benchmark: how long does sending a long follow history hold the agent's
event loop?

No root or runc needed. From the repository root::

    .venv/bin/python bench/log_history.py [--mib 50] [--mode inline|thread]

What it does: writes a container's full log the way the agent stores it
(log.jsonl and its rotated files, ``--mib`` in all, 10 MiB a file, records
of 60-140 characters of text: ~450k lines for 50 MiB), then, with a ticker
task on the loop that asks to run every 1 ms, follows it twice as a
follower back from a flood does: everything (``tail=all``), then ``since``
the middle line. The follow is drained as the agent's stream does it
(``chunk(2000)``, a pass of the loop after each, as a write to a client
that keeps up gives at most).

Figures: ``stall_max_ms`` (the longest the ticker waited past its 1 ms:
how long the loop was held, e.g. every other container's tailer and follow
stream), ``stall_p99_ms``, ``send_s`` (the whole history sent), ``lines``,
``peak_rss_growth_mib`` (peak RSS over what it was before the follows).

``--mode thread`` (for comparison, not what the agent does): each block
is read by ``asyncio.to_thread`` instead of on the loop (one block at a
time, so memory stays bounded as inline); the GIL still interleaves the
thread's parsing with the loop.

Goal: ``stall_max_ms`` <= 20 for both follows. The last line is one JSON
object: {"bench": "log_history", "figures": {...}, "goals": {...}, "ok": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from runtime_agent import wire
from runtime_agent.containers.log_records import line_json, rfc3339
from runtime_agent.containers.logs import LogConfig, LogTailer

FILE_BYTES = 10 * 1024 * 1024


def write_log(log_dir: Path, mib: int) -> tuple[int, float]:
    """Files of ``mib`` MiB in all, oldest first; (lines, the middle line's time)."""
    log_dir.mkdir(parents=True)
    files = max(1, mib * 1024 * 1024 // FILE_BYTES)
    names = [f"log.jsonl.{i}" for i in range(files - 1, 0, -1)] + ["log.jsonl"]
    n, start = 0, time.time() - 3600
    for name in names:
        parts, size = [], 0
        while size < FILE_BYTES:
            n += 1
            text = f"GET /item/{n} 200 " + "x" * (40 + n % 80)
            record = line_json(wire.LogLine(rfc3339(start + n * 0.001), "stdout", text, n))
            parts.append(record)
            size += len(record)
        (log_dir / name).write_text("".join(parts))
    return n, start + n // 2 * 0.001


async def ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(max(0.0, now - last - 0.001))
        last = now


async def drain(follow: Any, thread: bool) -> int:
    if thread:  # the comparison: each block read off the loop
        history = follow._history

        async def chunk() -> bytes | None:
            while follow._history is not None:
                records = await asyncio.to_thread(history.step, 2000)
                if records is None:
                    follow._history = None
                elif records:
                    return "".join(records).encode()
            return b""
    else:

        async def chunk() -> bytes | None:
            return await follow.chunk(2000, timeout=0)

    lines = 0
    while got := await chunk():
        lines += got.count(b"\n")
        await asyncio.sleep(0)  # what a write to a client that keeps up gives at most
    if thread:
        while got := await follow.chunk(2000, timeout=0):
            lines += got.count(b"\n")
    return lines


async def measure(tailer: LogTailer, since: float | None, thread: bool) -> dict[str, float]:
    gaps: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(gaps, stop))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    follow = tailer.follow(None, since)
    lines = await drain(follow, thread)
    sent = time.perf_counter() - started
    follow.close()
    await asyncio.sleep(0.01)
    stop.set()
    await tick
    gaps.sort()
    return {
        "stall_max_ms": round(gaps[-1] * 1000, 1),
        "stall_p99_ms": round(gaps[int(len(gaps) * 0.99)] * 1000, 1),
        "send_s": round(sent, 2),
        "lines": lines,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--mode", choices=["inline", "thread"], default="inline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-log-history-") as tmp:
        log_dir = Path(tmp) / "logs"
        total, middle = write_log(log_dir, args.mib)
        tailer = LogTailer("bench", log_dir, LogConfig(max_files=6))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        thread = args.mode == "thread"
        everything = await measure(tailer, None, thread)
        half = await measure(tailer, middle, thread)
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        await tailer.close()
    figures = {
        "mode": args.mode,
        "log_lines": total,
        "all": everything,
        "since_middle": half,
        "peak_rss_growth_mib": round(growth, 1),
    }
    goals = {"stall_max_ms": 20}
    ok = (
        everything["lines"] == total
        and everything["stall_max_ms"] <= goals["stall_max_ms"]
        and half["stall_max_ms"] <= goals["stall_max_ms"]
    )
    print(json.dumps({"bench": "log_history", "figures": figures, "goals": goals, "ok": ok}))


if __name__ == "__main__":
    asyncio.run(main())
