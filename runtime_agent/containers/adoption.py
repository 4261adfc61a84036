"""Taking a stored container back after an agent restart.

An agent restart never stops a container: the new agent reads each record,
asks runc what it knows, and works out what happened while it was away.
runc's word decides; the stored pid must match, so a reused pid is never
mistaken for the container.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from runtime_agent.containers.exits import ExitWatcher, delete_runc, reap_if_child
from runtime_agent.containers.records import ContainerRecord
from runtime_agent.containers.supervision import Event, Started, StartFailed
from runtime_agent.oci.runc import Runc
from runtime_agent.wire import ContainerState

log = logging.getLogger("runtime_agent.containers")


@dataclass(frozen=True)
class Adoption:
    """What the manager still has to do for an adopted container."""

    event: Event | None = None  # for the restart policy
    exited: bool = False  # it exited while the agent was away
    exit_code: int | None = None  # None: not our child, so unknowable
    finish_stop: bool = False  # it was being stopped: finish that


async def adopt(rec: ContainerRecord, runc: Runc, exits: ExitWatcher) -> Adoption:
    """Look at one stored container and watch its process again if it runs."""
    name = rec.name
    state = await asyncio.to_thread(runc.state, name)
    status = state.get("status") if state else None
    exits.expect(name)
    if rec.sup.pid is None:
        if rec.sup.state == ContainerState.STARTING:
            # The agent died between "launch" and "started": runc's word decides.
            if status == "running" and state:
                exits.watch_adopted(name, int(state["pid"]))
                return Adoption(event=Started(int(state["pid"])))
            await delete_runc(runc, name)
            return Adoption(event=StartFailed("the agent restarted while starting it"))
        if status is not None:
            await delete_runc(runc, name)  # a stopped leftover
        return Adoption()
    if status in ("running", "paused") and state and int(state["pid"]) == rec.sup.pid:
        exited, code = exits.poll(name, rec.sup.pid)
        if not exited:
            log.info("re-adopted %s (pid %d)", name, rec.sup.pid)
            return Adoption(finish_stop=rec.sup.state == ContainerState.STOPPING)
    else:
        code = reap_if_child(rec.sup.pid)
    log.info("%s exited while the agent was away", name)
    return Adoption(exited=True, exit_code=code)
