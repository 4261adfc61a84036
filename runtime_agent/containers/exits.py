"""Noticing that a container's main process exited, and with what code.

No process of ours stays behind per container: ``runc run --detach`` detaches
the container's init. To still learn exit codes, the agent makes itself a
*child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): when ``runc run``
exits, the orphaned container init is re-parented to the agent, which reaps
it with ``waitpid(pid, WNOHANG)`` on each tick. Only container pids are
waited for, never ``-1``, so ``subprocess`` calls elsewhere keep their own
children.

A container adopted after an agent restart is no longer our child (its
parent became init, or whichever subreaper is above us): its exit is noticed
through a pidfd, and its exit code is reported as unknown (``None``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select

from runtime_agent.host.errors import NotFound
from runtime_agent.oci.runc import Runc

log = logging.getLogger("runtime_agent.containers")


def exit_code_of(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+n after signal n."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def reap_if_child(pid: int) -> int | None:
    """The exit code when ``pid`` is our (exited) child, else None (unknowable)."""
    try:
        wpid, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return exit_code_of(status) if wpid else None


class ExitWatcher:
    """Per container: how to notice its process's exit (waitpid for our
    children, a pidfd for adopted ones) and an event set when it did."""

    def __init__(self) -> None:
        self._pidfds: dict[str, int] = {}  # adopted containers: not our children
        self._exited: dict[str, asyncio.Event] = {}

    def expect(self, name: str) -> None:
        """A process of ``name`` runs from now on: a fresh exit event for it."""
        self._exited[name] = asyncio.Event()

    def event(self, name: str) -> asyncio.Event:
        """Set when the process of ``name`` exits (after :meth:`expect`)."""
        return self._exited[name]

    def notify(self, name: str) -> None:
        event = self._exited.get(name)
        if event is not None:
            event.set()

    def poll(self, name: str, pid: int) -> tuple[bool, int | None]:
        """(has the process exited, its exit code if we can know it)."""
        if name not in self._pidfds:
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return self.watch_adopted(name, pid)
            return (True, exit_code_of(status)) if wpid else (False, None)
        readable, _, _ = select.select([self._pidfds[name]], [], [], 0)
        if not readable:
            return False, None
        self._forget_pidfd(name)
        return True, reap_if_child(pid)

    def watch_adopted(self, name: str, pid: int) -> tuple[bool, int | None]:
        """Not our child: hold a pidfd, which becomes readable when it exits
        (and, unlike a bare pid, cannot be fooled by pid reuse)."""
        try:
            self._pidfds[name] = os.pidfd_open(pid)
        except ProcessLookupError:
            return True, None
        return False, None

    def forget(self, name: str) -> None:
        """The container is gone: drop its pidfd and its event."""
        self._forget_pidfd(name)
        self._exited.pop(name, None)

    def close(self) -> None:
        for fd in self._pidfds.values():
            os.close(fd)
        self._pidfds.clear()

    def _forget_pidfd(self, name: str) -> None:
        fd = self._pidfds.pop(name, None)
        if fd is not None:
            os.close(fd)


async def wait_for(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), max(timeout, 0.0))
    except TimeoutError:
        return False
    return True


async def delete_runc(runc: Runc, name: str) -> None:
    """Forget runc's record of a container; one that is already gone is fine."""
    try:
        await asyncio.to_thread(runc.delete, name, force=True)
    except NotFound:
        pass
    except Exception:
        log.exception("runc delete %s failed", name)
