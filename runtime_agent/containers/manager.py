"""The container manager: create, start, stop, restart, kill, remove, exec,
logs and stats of the containers of one host, with restart policies, and
re-adoption of running containers when the agent restarts.

The manager owns the records and answers the API; it composes the parts,
each with its own state and tests: :class:`~prepare.Preparer` (rootfs,
network, bundle, launch, teardown), :class:`~lifecycle.Lifecycle` (start,
stop, exit watching with :class:`~exits.ExitWatcher`, restarts, adoption
with :func:`~adoption.adopt`), :class:`~exec.ExecRunner`,
:class:`~logs.LogStreams` and :class:`~operations.Operations` (per-container
locks, tasks that outlive their caller).

Blocking work (runc, mount, netlink, image pulls) runs in threads via
:func:`asyncio.to_thread`; each container's operations are serialised by a
per-name :class:`asyncio.Lock`. A single tick task (every ``tick_s``) notices
exits and advances the restart policy (:mod:`supervision`).

The start path is kept short because it is what a deploy waits for (goal:
at most twice a bare ``runc run``, see bench/agent_start.py): the image is
looked up without a registry round trip when the reference is a digest or a
tag pulled before (Docker's "missing" pull policy; ``POST /v1/images/pull``
refreshes a tag), the rootfs and the network are prepared side by side, and
one ``runc run --detach`` replaces ``runc create`` + ``runc start``: the
network namespace exists before runc runs, so nothing has to happen between
the two.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import shutil
import signal as signals
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from runtime_agent import wire
from runtime_agent.config import AgentConfig
from runtime_agent.containers import isolation
from runtime_agent.containers.exec import ExecRunner
from runtime_agent.containers.lifecycle import Lifecycle
from runtime_agent.containers.logs import LogConfig, LogStreams, rfc3339
from runtime_agent.containers.operations import Operations
from runtime_agent.containers.prepare import Images, Preparer
from runtime_agent.containers.records import ContainerRecord, Store
from runtime_agent.containers.supervision import BackoffConfig
from runtime_agent.host.errors import DISK_ERRNOS, Conflict, NotFound, OutOfSpace
from runtime_agent.host.libc import set_child_subreaper
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci import cgroups, rootfs
from runtime_agent.oci.runc import Runc
from runtime_agent.wire import ContainerState

log = logging.getLogger("runtime_agent.containers")

S = ContainerState
ALIVE = (S.STARTING, S.RUNNING, S.STOPPING)
# Alias: inside the manager, ``list`` is the method of that name.
Infos = list[wire.ContainerInfo]


def _same_request(a: wire.CreateContainer, b: wire.CreateContainer) -> bool:
    # "start" is what to do now, not what the container is: a retry may differ there.
    return dataclasses.replace(a, start=True) == dataclasses.replace(b, start=True)


class ContainerManager:
    """Every container of this agent (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        images: Images,
        network: HostNetwork,
        runc: Runc,
        *,
        tick_s: float = 0.1,
        log_poll_s: float = 0.05,
    ) -> None:
        self.config = config
        self.runc = runc
        self.store = Store(config.containers_dir)
        self.records: dict[str, ContainerRecord] = {}
        # Cgroups are host-global: a prefix unique to this data root keeps two
        # agents (or test runs) with a same-named container apart.
        cgroup_prefix = "paas-" + hashlib.sha256(str(config.root).encode()).hexdigest()[:8]
        self.preparer = Preparer(images, network, runc, self.store, cgroup_prefix, config)
        self.execs = ExecRunner(runc, self.store)
        self.log_streams = LogStreams(
            LogConfig(
                max_bytes=config.log_max_bytes,
                max_files=config.log_max_files,
                backlog_bytes=config.log_backlog_bytes,
                poll_s=log_poll_s,
                redis_url=config.redis_url,
            )
        )
        self.ops = Operations()
        self.lifecycle = Lifecycle(
            self.records,
            self.store,
            BackoffConfig(config.backoff_base_s, config.backoff_cap_s, config.backoff_reset_s),
            self.preparer,
            self.log_streams,
            self.ops,
            tick_s=tick_s,
            stop_grace_s=config.stop_grace_s,
        )

    # --- agent lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Re-adopt every stored container and start the tick. Never starts or
        stops a container that is fine as it is."""
        set_child_subreaper()
        rootfs.open_for_ranges(self.config.root, self.config.containers_dir)
        self.log_streams.connect()
        for name, rec in self.store.load_all().items():
            if not rec.prepared:
                # The agent died while creating it: the client never got an answer
                # and will retry; undo the half-made container.
                log.warning("removing %s: its creation was interrupted", name)
                await self._teardown(rec)
                continue
            self.records[name] = rec
            self._open_logs(rec)
            try:
                await self.lifecycle.readopt(rec)
            except Exception:
                log.exception("could not re-adopt %s", name)
        self.lifecycle.start_ticking()

    async def shutdown(self) -> None:
        """Stop our tasks and close files. Containers keep running."""
        await self.lifecycle.stop_ticking()
        # A restart in flight finishes (its runc call cannot be interrupted
        # anyway) so that its record says what really happened.
        await self.ops.drain(timeout=30)
        await self.log_streams.close_all()
        self.lifecycle.close()

    # --- the API --------------------------------------------------------------------

    async def create(
        self, req: wire.CreateContainer, auth: wire.RegistryAuth | None = None
    ) -> wire.ContainerInfo:
        """Create (and unless ``req.start`` is false, start) a container.

        Idempotent by name: the same request again returns the existing
        container; a different request under a taken name is a Conflict.
        """
        isolation.id_range_for(req, self.config)  # a bad range fails before anything is made
        return await self.ops.locked(req.name, lambda: self._create(req, auth))

    async def _create(
        self, req: wire.CreateContainer, auth: wire.RegistryAuth | None
    ) -> wire.ContainerInfo:
        rec = self.records.get(req.name)
        if rec is not None:
            if not _same_request(rec.request, req):
                raise Conflict(f"a different container named {req.name!r} exists", name=req.name)
            if req.start and rec.sup.state == S.CREATED:
                await self.lifecycle.start(rec)
            return self.inspect(req.name)
        rec = ContainerRecord(name=req.name, request=req, created_at=time.time())
        try:
            self.store.save(rec)
            await self.preparer.prepare(rec, auth)
        except BaseException as exc:
            await self._teardown(rec)
            if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
                raise OutOfSpace(
                    f"out of disk space on this host's agent root ({self.config.root}): "
                    f"{req.name} was not created; free space there and retry",
                    name=req.name,
                ) from exc
            raise
        self.records[req.name] = rec
        self.store.save(rec)
        self._open_logs(rec)
        if req.start:
            await self.lifecycle.start(rec)
        return self.inspect(req.name)

    async def start_container(self, name: str) -> None:
        await self.ops.locked(name, lambda: self.lifecycle.start(self._get(name)))

    async def stop(self, name: str, timeout_s: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the policy will not restart it."""
        grace = self.config.stop_grace_s if timeout_s is None else timeout_s
        await self.ops.locked(name, lambda: self.lifecycle.stop(self._get(name), grace))

    async def restart(self, name: str, timeout_s: float | None = None) -> None:
        grace = self.config.stop_grace_s if timeout_s is None else timeout_s

        async def stop_then_start() -> None:
            rec = self._get(name)
            await self.lifecycle.stop(rec, grace)
            await self.lifecycle.start(rec)

        await self.ops.locked(name, stop_then_start)

    async def kill(self, name: str, signal: int | str = signals.SIGKILL) -> None:
        """Send a signal to the container's main process. Unlike :meth:`stop`
        this is not a request to stop: the restart policy still applies."""
        rec = self._get(name)
        if rec.sup.pid is None:
            raise Conflict(f"container {name} is not running", name=name)
        sig = int(signal) if isinstance(signal, int) else signal
        if not await asyncio.to_thread(self.runc.kill, name, sig):
            raise Conflict(f"container {name} is not running", name=name)

    async def remove(self, name: str, force: bool = False) -> None:
        """Remove the container and everything it holds (process, runc state,
        ports, network, rootfs mount, files). A running one needs ``force``."""
        await self.ops.locked(name, lambda: self._remove(name, force))
        self.ops.forget(name)

    async def _remove(self, name: str, force: bool) -> None:
        rec = self._get(name)
        if rec.sup.pid is not None:
            if not force:
                raise Conflict(
                    f"container {name} is running: stop it first or remove with force",
                    name=name,
                )
            await self.lifecycle.stop(rec, 0.0)
        self.records.pop(name, None)
        await self._teardown(rec)

    def list(self) -> Infos:
        return [self.inspect(name) for name in sorted(self.records)]

    def inspect(self, name: str) -> wire.ContainerInfo:
        return container_info(self._get(name))

    async def exec(
        self, name: str, req: wire.ExecRequest
    ) -> AsyncIterator[tuple[str, bytes | int]]:
        """Run a command in the running container. Yields ``(stream, chunk)``
        as output arrives, then ``("exit", code)``. Checks (404, 409) happen
        here, before the first item."""
        rec = self._get(name)
        if rec.sup.state != S.RUNNING:
            raise Conflict(f"container {name} is not running", name=name)
        return self.execs.start(name, req)

    def logs(
        self,
        name: str,
        tail: int | None = None,
        since: datetime | float | None = None,
        follow: bool = False,
    ) -> AsyncIterator[wire.LogLine]:
        """Stored lines (the last ``tail``, at or after ``since``), and with
        ``follow`` every new one until the container is removed."""
        self._get(name)
        cutoff = since.timestamp() if isinstance(since, datetime) else since
        return self.log_streams.lines(name, tail, cutoff, follow)

    async def stats(self, name: str) -> wire.Stats:
        rec = self._get(name)
        limit = rec.request.limits.memory_bytes
        idle = wire.Stats(cpu_usage_ns=0, memory_bytes=0, memory_limit_bytes=limit, pids=0)
        if rec.sup.pid is None:
            return idle
        try:
            return await asyncio.to_thread(cgroups.stats, self.preparer.cgroups_path(name))
        except NotFound:
            return idle  # it exited (and runc deleted its cgroup) since we looked

    def host_info(self) -> dict[str, Any]:
        """Capacity of the host and what the containers use of it."""
        return host_info(self.config.root, list(self.records.values()))

    async def _teardown(self, rec: ContainerRecord) -> None:
        """Undo everything a container holds; each step is idempotent, so an
        interrupted teardown is finished by the next one."""
        await self.log_streams.close(rec.name)
        self.lifecycle.forget(rec.name)
        await asyncio.to_thread(self.preparer.teardown, rec)

    def _open_logs(self, rec: ContainerRecord) -> None:
        self.log_streams.open(rec.name, self.store.container_dir(rec.name) / "logs")

    def _get(self, name: str) -> ContainerRecord:
        rec = self.records.get(name)
        if rec is None:
            raise NotFound(f"no container named {name!r}", name=name)
        return rec


def container_info(rec: ContainerRecord) -> wire.ContainerInfo:
    sup = rec.sup
    return wire.ContainerInfo(
        name=rec.name,
        image=rec.request.image,
        image_digest=rec.image_digest,
        state=sup.state,
        pid=sup.pid,
        exit_code=sup.exit_code,
        oom_killed=sup.oom_killed,
        created_at=_time(rec.created_at),
        started_at=_time(sup.started_at),
        finished_at=_time(sup.finished_at),
        restart_count=sup.restart_count,
        next_restart_at=_time(sup.next_restart_at),
        address=rec.address,
        ports=list(rec.request.ports),
        restart=rec.request.restart,
        labels=dict(rec.request.labels),
        error=sup.error or rec.error,
    )


def host_info(root: Path, records: list[ContainerRecord]) -> dict[str, Any]:
    """Capacity of the host and what the containers use of it."""
    disk = shutil.disk_usage(root)
    alive = [r for r in records if r.sup.state in (*ALIVE, S.BACKOFF)]
    return {
        "cpus": os.cpu_count() or 1,
        "memory_bytes": _mem_total(),
        "disk_bytes": disk.total,
        "disk_free_bytes": disk.free,
        "containers_running": sum(1 for r in alive if r.sup.pid is not None),
        "memory_reserved_bytes": sum(r.request.limits.memory_bytes or 0 for r in alive),
    }


def _time(ts: float | None) -> str | None:
    return rfc3339(ts) if ts else None


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0
