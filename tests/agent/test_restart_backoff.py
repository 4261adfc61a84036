"""Restart policies on real containers: a crash loop backs off with growing
delays, retries run out, clean exits and stops are respected.

Backoff here is 0.2 s doubling to 1.6 s (the defaults are 1 s to 5 min)."""

from __future__ import annotations

import asyncio

import pytest

from runtime_agent.containers.logs import parse_time
from runtime_agent.wire import ContainerState as S
from tests.support.agent_harness import request, unique, wait_state
from tests.support.processes import async_wait_until

pytestmark = pytest.mark.root


async def start_times(manager, name):
    return [parse_time(ln.time) async for ln in manager.logs(name) if ln.line == "start"]


async def test_a_crash_looping_container_backs_off_with_growing_delays(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", "echo start; exit 1"], restart="always"))

    async def five_starts():
        times = await start_times(manager, name)
        return times if len(times) >= 5 else None

    times = await async_wait_until(five_starts, timeout_s=20, what="five starts")
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][:4]
    # Expected delays 0.2, 0.4, 0.8, 1.6 s, plus the start itself and the
    # 50 ms tick. The lower bounds are the backoff's promise; the first gap
    # being short shows the delays grow rather than start long (a loaded
    # host can stretch any gap, so no tight upper bounds).
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8, 1.6], strict=True):
        assert gap >= delay - 0.05, (gaps, delay)
    assert gaps[0] < 1.2, gaps
    info = manager.inspect(name)
    assert info.restart_count >= 4


async def test_inspect_shows_restarting_with_the_next_restart_time(agent):
    manager = await agent.manager()
    name = unique()
    await manager.create(request(name, ["sh", "-c", "exit 2"], restart="on-failure"))
    info = await wait_state(manager, name, S.BACKOFF)
    assert info.state.value == "restarting"
    assert info.exit_code == 2
    assert info.next_restart_at is not None


async def test_on_failure_gives_up_after_max_retries(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", "echo start; exit 1"], restart="on-failure:2"))
    info = await wait_state(manager, name, S.DEAD, timeout_s=15)
    assert info.restart_count == 2
    assert len(await start_times(manager, name)) == 3


async def test_on_failure_does_not_restart_a_clean_exit(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", "echo start; exit 0"], restart="on-failure"))
    info = await wait_state(manager, name, S.EXITED)
    await asyncio.sleep(0.6)
    assert manager.inspect(name).state == S.EXITED
    assert info.restart_count == 0


async def test_a_stopped_container_is_not_restarted_even_with_always(manager):
    name = unique()
    script = "trap 'exit 0' TERM; echo start; while true; do sleep 0.05; done"
    await manager.create(request(name, ["sh", "-c", script], restart="always"))
    await manager.stop(name, 5.0)
    await asyncio.sleep(0.8)
    info = manager.inspect(name)
    assert (info.state, info.restart_count) == (S.EXITED, 0)


async def test_a_stop_during_backoff_cancels_the_restart(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", "echo start; exit 1"], restart="always"))
    await wait_state(manager, name, S.BACKOFF)
    await manager.stop(name, 1.0)
    count = len(await start_times(manager, name))
    await asyncio.sleep(1.0)
    assert manager.inspect(name).state == S.EXITED
    assert len(await start_times(manager, name)) == count


async def test_a_killed_container_with_always_comes_back_with_a_new_pid(manager):
    name = unique()
    script = "echo start; while true; do sleep 0.05; done"
    info = await manager.create(request(name, ["sh", "-c", script], restart="always"))
    await manager.kill(name, 9)

    def restarted():
        now = manager.inspect(name)
        return now.state == S.RUNNING and now.pid not in (None, info.pid) and now

    again = await async_wait_until(restarted, timeout_s=10, what="a restart")
    assert again.restart_count == 1
