"""Per-container locks and the agent's own tasks.

Each container's operations are serialised by a per-name
:class:`asyncio.Lock`. An operation runs as a task of its own so that it
completes even if its caller goes away, and shutdown waits for the tasks
still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("runtime_agent.containers")
T = TypeVar("T")


class Operations:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def busy(self, name: str) -> bool:
        """An operation on ``name`` is under way (it owns the record for now)."""
        return self.lock(name).locked()

    def forget(self, name: str) -> None:
        self._locks.pop(name, None)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_note_failure)
        return task

    async def complete(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run an operation to its end even if the caller goes away (an HTTP
        client that disconnects): a create or stop cut in the middle would
        leave runc, mounts and the record disagreeing. Shutdown waits for it."""
        task: asyncio.Task[T] = self.spawn(coro, "operation")
        return await asyncio.shield(task)

    async def locked(self, name: str, step: Callable[[], Awaitable[T]]) -> T:
        """:meth:`complete` ``step`` while holding ``name``'s lock."""

        async def run() -> T:
            async with self.lock(name):
                return await step()

        return await self.complete(run())

    async def drain(self, timeout: float) -> None:
        """Let the tasks in flight finish (their runc calls cannot be
        interrupted anyway), so that records say what really happened."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)


def _note_failure(task: asyncio.Task[Any]) -> None:
    # Retrieving the exception keeps asyncio from warning about it when the
    # caller that would have received it went away.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("task %s failed: %s", task.get_name(), exc)
