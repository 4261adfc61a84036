"""Driving each container's process through the restart policy's states
(:mod:`supervision`): launch, stop, noticing exits on every tick, the
relaunch after a backoff, and adoption after an agent restart.

The restart policy itself is pure (:func:`supervision.transition`); this is
the part that acts on it, and the only place that changes a record's
``sup`` (through :meth:`Lifecycle.advance`, which persists the change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from runtime_agent.containers.adoption import adopt
from runtime_agent.containers.exits import ExitWatcher, delete_runc, wait_for
from runtime_agent.containers.logs import LogStreams
from runtime_agent.containers.operations import Operations
from runtime_agent.containers.prepare import Preparer
from runtime_agent.containers.records import ContainerRecord, Store
from runtime_agent.containers.supervision import (
    Action,
    BackoffConfig,
    Event,
    Exited,
    Started,
    StartFailed,
    StartRequested,
    StopRequested,
    Tick,
    transition,
)
from runtime_agent.host import failpoints
from runtime_agent.host.errors import Conflict, HostError, NotFound
from runtime_agent.oci import cgroups
from runtime_agent.wire import ContainerState

log = logging.getLogger("runtime_agent.containers")

S = ContainerState
KILL_WAIT_S = 10.0  # after SIGKILL the kernel needs moments, not seconds; beyond this, a bug


class Lifecycle:
    """Starts, stops and watches the processes of the manager's records."""

    def __init__(
        self,
        records: dict[str, ContainerRecord],
        store: Store,
        backoff: BackoffConfig,
        preparer: Preparer,
        log_streams: LogStreams,
        ops: Operations,
        *,
        tick_s: float,
        stop_grace_s: float,
    ) -> None:
        self.records = records
        self.store = store
        self.backoff = backoff
        self.preparer = preparer
        self.runc = preparer.runc
        self.log_streams = log_streams
        self.ops = ops
        self.tick_s = tick_s
        self.stop_grace_s = stop_grace_s
        self.exits = ExitWatcher()
        self._tick_task: asyncio.Task[None] | None = None

    def start_ticking(self) -> None:
        self._tick_task = asyncio.create_task(self._tick_loop(), name="containers-tick")

    async def stop_ticking(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task

    # --- start and stop ---------------------------------------------------------------

    async def start(self, rec: ContainerRecord) -> None:
        actions = self.advance(rec, StartRequested())
        if Action.LAUNCH in actions:
            await self._launch(rec, raise_errors=True)

    async def stop(self, rec: ContainerRecord, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace``; the policy will not restart it."""
        self.advance(rec, StopRequested())
        if rec.sup.pid is None:
            return
        if failpoints.armed():  # recorded as stopping, not yet signalled
            await asyncio.to_thread(failpoints.failpoint, "stop.requested", rec.name)
        exited = self.exits.event(rec.name)
        if grace > 0:
            await self._signal(rec.name, "TERM")
            if await wait_for(exited, grace):
                return
            log.info("%s did not stop within %.1fs: SIGKILL", rec.name, grace)
        await self._signal(rec.name, "KILL", all=True)
        if not await wait_for(exited, KILL_WAIT_S):
            raise HostError(f"container {rec.name} did not die after SIGKILL", name=rec.name)

    async def _launch(self, rec: ContainerRecord, *, raise_errors: bool) -> None:
        """One ``runc run --detach``: the container writes to its log files."""
        name = rec.name
        try:
            # One thread hop for rootfs, network and runc: each hop costs a
            # wake-up of the event loop.
            pid = await asyncio.to_thread(self.preparer.launch, rec)
        except Exception as exc:
            log.error("could not start %s: %s", name, exc)
            self.advance(rec, StartFailed(str(exc)))
            if raise_errors:
                raise
            return
        self.exits.expect(name)
        self.advance(rec, Started(pid))
        log.info("started %s (pid %d)", name, pid)

    async def _signal(self, name: str, sig: str, *, all: bool = False) -> None:
        """Signal for a stop: a process that is already gone is what we wanted
        (the tick reaps it), not an error."""
        with contextlib.suppress(NotFound, Conflict):
            await asyncio.to_thread(self.runc.kill, name, sig, all=all)

    # --- noticing exits and restarting -----------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:  # one bad tick must not end supervision for good
                log.exception("container tick failed")
            await asyncio.sleep(self.tick_s)

    async def _tick(self) -> None:
        for name, rec in list(self.records.items()):
            if rec.sup.pid is not None:
                exited, code = self.exits.poll(name, rec.sup.pid)
                if exited:
                    await self._on_exit(rec, code)
            if self.ops.busy(name):
                continue  # an operation is under way; it owns the record for now
            if Action.LAUNCH in self.advance(rec, Tick()):
                self.ops.spawn(self._relaunch(name), f"restart-{name}")

    async def _relaunch(self, name: str) -> None:
        async with self.ops.lock(name):
            rec = self.records.get(name)
            if rec is not None and rec.sup.state == S.STARTING and rec.sup.pid is None:
                log.info("restarting %s (restart %d)", name, rec.sup.restart_count)
                await self._launch(rec, raise_errors=False)

    async def _on_exit(self, rec: ContainerRecord, code: int | None) -> None:
        """Read the OOM flag (before runc delete removes the cgroup), delete
        runc's record, flush the last log line, and let the policy decide."""
        name = rec.name
        try:
            oom = await asyncio.to_thread(cgroups.oom_killed, self.preparer.cgroups_path(name))
        except Exception as exc:
            log.warning("cannot read the OOM flag of %s: %s", name, exc)
            oom = False
        await delete_runc(self.runc, name)
        self.log_streams.flush(name)
        self.advance(rec, Exited(code, oom_killed=oom))
        log.info("%s exited (code %s%s): now %s", name, code, ", OOM" if oom else "", rec.sup.state)
        self.exits.notify(name)

    async def readopt(self, rec: ContainerRecord) -> None:
        """Take a stored container back after an agent restart."""
        adoption = await adopt(rec, self.runc, self.exits)
        if adoption.event is not None:
            self.advance(rec, adoption.event)
        if adoption.finish_stop:
            self.ops.spawn(self._finish_stop(rec.name), f"stop-{rec.name}")
        if adoption.exited:
            await self._on_exit(rec, adoption.exit_code)

    async def _finish_stop(self, name: str) -> None:
        # The previous agent began a stop and died: finish it.
        async with self.ops.lock(name):
            rec = self.records.get(name)
            if rec is not None:
                await self.stop(rec, self.stop_grace_s)

    def advance(self, rec: ContainerRecord, event: Event) -> list[Action]:
        """Feed ``event`` to the policy and persist the result if it changed."""
        sup, actions = transition(rec.sup, event, time.time(), rec.request.restart, self.backoff)
        if sup != rec.sup:
            rec.sup = sup
            if rec.name in self.records:
                self.store.save(rec, durable=False)
        return actions

    def forget(self, name: str) -> None:
        self.exits.forget(name)

    def close(self) -> None:
        self.exits.close()
