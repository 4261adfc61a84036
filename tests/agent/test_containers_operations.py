"""Per-container locks and operations that outlive their caller."""

from __future__ import annotations

import asyncio

import pytest

from runtime_agent.containers.operations import Operations


async def test_an_operation_finishes_even_when_its_caller_is_cancelled():
    ops = Operations()
    release = asyncio.Event()
    done: list[str] = []

    async def step() -> None:
        await release.wait()
        done.append("web")

    caller = asyncio.create_task(ops.locked("web", step))
    await asyncio.sleep(0)  # let the caller start the operation
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ops.busy("web")
    release.set()
    await ops.drain(timeout=10)
    assert done == ["web"]
    assert not ops.busy("web")


async def test_operations_on_one_container_run_one_at_a_time():
    ops = Operations()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        order.append("first in")
        first_in.set()
        await release.wait()
        order.append("first out")

    async def second() -> None:
        order.append("second")

    a = asyncio.create_task(ops.locked("web", first))
    await first_in.wait()
    b = asyncio.create_task(ops.locked("web", second))
    other = await ops.locked("db", lambda: asyncio.sleep(0, result="db ran"))
    release.set()
    await asyncio.gather(a, b)
    assert other == "db ran"
    assert order == ["first in", "first out", "second"]


async def test_an_error_reaches_the_caller():
    ops = Operations()

    async def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await ops.locked("web", fail)
