"""The container manager: create, start, stop, restart, kill, remove, exec,
logs and stats of the containers of one host, with restart policies, and
re-adoption of running containers when the agent restarts.

No process of ours stays behind per container: ``runc run --detach`` detaches
the container's init, whose stdout/stderr are plain files (:mod:`logs`). To
still learn exit codes, the agent makes itself a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``): when ``runc run`` exits, the orphaned
container init is re-parented to the agent, which reaps it with
``waitpid(pid, WNOHANG)`` on each tick. Only container pids are waited for,
never ``-1``, so ``subprocess`` calls elsewhere keep their own children.

A container adopted after an agent restart is no longer our child (its
parent became init, or whichever subreaper is above us): its exit is noticed
through a pidfd and ``runc state``, and its exit code is reported as unknown
(``None``). The restart policy counts an unknown exit as a failure.

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
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import select
import shutil
import signal as signals
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from runtime_agent import wire
from runtime_agent.config import AgentConfig
from runtime_agent.containers.logs import LogConfig, LogTailer, connect_redis, open_raw_fds, rfc3339
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
from runtime_agent.host.errors import AgentError, Conflict, InvalidRequest, NotFound
from runtime_agent.host.libc import set_child_subreaper
from runtime_agent.net.bridge import HostNetwork, write_etc_files
from runtime_agent.oci import cgroups, overlay, spec
from runtime_agent.oci.runc import Runc, stop_exec
from runtime_agent.wire import ContainerState

log = logging.getLogger("runtime_agent.containers")
T = TypeVar("T")

S = ContainerState
ALIVE = (S.STARTING, S.RUNNING, S.STOPPING)
KILL_WAIT_S = 10.0  # after SIGKILL the kernel needs moments, not seconds; beyond this, a bug
EXEC_READ = 64 * 1024
# Aliases: inside the manager, ``list`` is the method of that name.
Actions = list[Action]
Infos = list[wire.ContainerInfo]


class Image(Protocol):
    """What the manager reads of a pulled image (read-only, like images.Image)."""

    @property
    def digest(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...


class Images(Protocol):
    """What the manager needs from :class:`images.ImageStore` (blocking calls)."""

    def pull(self, ref: str, *, refresh: bool = True) -> Image: ...
    def lower_dirs(self, image: Any) -> list[Path]: ...


def exit_code_of(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+n after signal n."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


# --- the image config and the request, Docker-style ------------------------------


def resolve_args(image_config: dict[str, Any], req: wire.CreateContainer) -> list[str]:
    """Entrypoint + cmd as Docker computes them: an entrypoint given in the request
    drops the image's Cmd (it was written for the image's entrypoint)."""
    cfg = image_config.get("config") or {}
    if req.entrypoint is not None:
        entrypoint, cmd = list(req.entrypoint), list(req.cmd or [])
    else:
        entrypoint = list(cfg.get("Entrypoint") or [])
        cmd = list(req.cmd) if req.cmd is not None else list(cfg.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidRequest("neither the request nor the image gives a command", field="cmd")
    return args


def merge_env(image_config: dict[str, Any], req: wire.CreateContainer) -> dict[str, str]:
    """The image's Env, overridden key by key by the request's."""
    env: dict[str, str] = {}
    for item in (image_config.get("config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    env.update(req.env)
    return env


def hostname_for(req: wire.CreateContainer) -> str:
    """The request's hostname, else the name made host-name-safe ('_' is not)."""
    return req.hostname or req.name.replace("_", "-").strip(".-")[:63] or "container"


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
        self.images = images
        self.network = network
        self.runc = runc
        self.tick_s = tick_s
        self.store = Store(config.containers_dir)
        self.backoff = BackoffConfig(
            config.backoff_base_s, config.backoff_cap_s, config.backoff_reset_s
        )
        self.log_config = LogConfig(
            max_bytes=config.log_max_bytes,
            max_files=config.log_max_files,
            poll_s=log_poll_s,
            redis_url=config.redis_url,
        )
        # Cgroups are host-global: a prefix unique to this data root keeps two
        # agents (or test runs) with a same-named container apart.
        self._cgroup_prefix = "paas-" + hashlib.sha256(str(config.root).encode()).hexdigest()[:8]
        self.records: dict[str, ContainerRecord] = {}
        self._tailers: dict[str, LogTailer] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._exited: dict[str, asyncio.Event] = {}
        self._pidfds: dict[str, int] = {}  # adopted containers: not our children
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tick_task: asyncio.Task[None] | None = None
        self._redis: Any = None

    # --- agent lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Re-adopt every stored container and start the tick. Never starts or
        stops a container that is fine as it is."""
        set_child_subreaper()
        self._redis = connect_redis(self.config.redis_url)
        for name, rec in self.store.load_all().items():
            if not rec.prepared:
                # The agent died while creating it: the client never got an answer
                # and will retry; undo the half-made container.
                log.warning("removing %s: its creation was interrupted", name)
                await self._teardown(rec)
                continue
            self.records[name] = rec
            self._start_tailer(rec)
            try:
                await self._adopt(rec)
            except Exception:
                log.exception("could not re-adopt %s", name)
        self._tick_task = asyncio.create_task(self._tick_loop(), name="containers-tick")

    async def shutdown(self) -> None:
        """Stop our tasks and close files. Containers keep running."""
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        if self._tasks:
            # A restart in flight finishes (its runc call cannot be interrupted
            # anyway) so that its record says what really happened.
            await asyncio.wait(list(self._tasks), timeout=30)
        for tailer in self._tailers.values():
            await tailer.close()
        self._tailers.clear()
        for fd in self._pidfds.values():
            os.close(fd)
        self._pidfds.clear()
        if self._redis is not None:
            await self._redis.aclose()

    # --- the API --------------------------------------------------------------------

    async def create(self, req: wire.CreateContainer) -> wire.ContainerInfo:
        """Create (and unless ``req.start`` is false, start) a container.

        Idempotent by name: the same request again returns the existing
        container; a different request under a taken name is a Conflict.
        """
        return await self._complete(self._create(req))

    async def _create(self, req: wire.CreateContainer) -> wire.ContainerInfo:
        async with self._lock(req.name):
            rec = self.records.get(req.name)
            if rec is not None:
                if not _same_request(rec.request, req):
                    raise Conflict(
                        f"a different container named {req.name!r} exists", name=req.name
                    )
                if req.start and rec.sup.state == S.CREATED:
                    await self._start_locked(rec)
                return self.inspect(req.name)
            rec = ContainerRecord(name=req.name, request=req, created_at=time.time())
            self.store.save(rec)
            try:
                await self._prepare(rec)
            except BaseException:
                await self._teardown(rec)
                raise
            self.records[req.name] = rec
            self.store.save(rec)
            self._start_tailer(rec)
            if req.start:
                await self._start_locked(rec)
            return self.inspect(req.name)

    async def start_container(self, name: str) -> None:
        await self._complete(self._start(name))

    async def _start(self, name: str) -> None:
        async with self._lock(name):
            await self._start_locked(self._get(name))

    async def stop(self, name: str, timeout_s: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the policy will not restart it."""
        grace = self.config.stop_grace_s if timeout_s is None else timeout_s
        await self._complete(self._stop(name, grace))

    async def _stop(self, name: str, grace: float) -> None:
        async with self._lock(name):
            await self._stop_locked(self._get(name), grace)

    async def restart(self, name: str, timeout_s: float | None = None) -> None:
        grace = self.config.stop_grace_s if timeout_s is None else timeout_s
        await self._complete(self._restart(name, grace))

    async def _restart(self, name: str, grace: float) -> None:
        async with self._lock(name):
            rec = self._get(name)
            await self._stop_locked(rec, grace)
            await self._start_locked(rec)

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
        await self._complete(self._remove(name, force))

    async def _remove(self, name: str, force: bool) -> None:
        async with self._lock(name):
            rec = self._get(name)
            if rec.sup.pid is not None:
                if not force:
                    raise Conflict(
                        f"container {name} is running: stop it first or remove with force",
                        name=name,
                    )
                await self._stop_locked(rec, 0.0)
            self.records.pop(name, None)
            await self._teardown(rec)
        self._locks.pop(name, None)

    def list(self) -> Infos:
        return [self.inspect(name) for name in sorted(self.records)]

    def inspect(self, name: str) -> wire.ContainerInfo:
        rec = self._get(name)
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

    async def exec(
        self, name: str, req: wire.ExecRequest
    ) -> AsyncIterator[tuple[str, bytes | int]]:
        """Run a command in the running container. Yields ``(stream, chunk)``
        as output arrives, then ``("exit", code)``. Checks (404, 409) happen
        here, before the first item."""
        rec = self._get(name)
        if rec.sup.state != S.RUNNING:
            raise Conflict(f"container {name} is not running", name=name)
        pid_file = self.store.container_dir(name) / f"exec-{uuid.uuid4().hex[:12]}.pid"
        proc = self.runc.exec(name, req.cmd, req.env, req.working_dir, pid_file=pid_file)
        return _exec_stream(proc, pid_file, req.timeout_s)

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
        tailer = self._tailers[name]
        cutoff = since.timestamp() if isinstance(since, datetime) else since
        if follow:
            return tailer.follow(tail, cutoff)
        return _iterate(tailer.read(tail, cutoff))

    async def stats(self, name: str) -> wire.Stats:
        rec = self._get(name)
        limit = rec.request.limits.memory_bytes
        idle = wire.Stats(cpu_usage_ns=0, memory_bytes=0, memory_limit_bytes=limit, pids=0)
        if rec.sup.pid is None:
            return idle
        try:
            return await asyncio.to_thread(cgroups.stats, self._cgroups_path(name))
        except NotFound:
            return idle  # it exited (and runc deleted its cgroup) since we looked

    def host_info(self) -> dict[str, Any]:
        """Capacity of the host and what the containers use of it."""
        disk = shutil.disk_usage(self.config.root)
        alive = [r for r in self.records.values() if r.sup.state in (*ALIVE, S.BACKOFF)]
        return {
            "cpus": os.cpu_count() or 1,
            "memory_bytes": _mem_total(),
            "disk_bytes": disk.total,
            "disk_free_bytes": disk.free,
            "containers_running": sum(1 for r in alive if r.sup.pid is not None),
            "memory_reserved_bytes": sum(r.request.limits.memory_bytes or 0 for r in alive),
        }

    # --- start and stop ---------------------------------------------------------------

    async def _start_locked(self, rec: ContainerRecord) -> None:
        actions = self._advance(rec, StartRequested())
        if Action.LAUNCH in actions:
            await self._launch(rec, raise_errors=True)

    async def _stop_locked(self, rec: ContainerRecord, grace: float) -> None:
        self._advance(rec, StopRequested())
        if rec.sup.pid is None:
            return
        exited = self._exited[rec.name]
        if grace > 0:
            await self._signal(rec.name, "TERM")
            if await _wait(exited, grace):
                return
            log.info("%s did not stop within %.1fs: SIGKILL", rec.name, grace)
        await self._signal(rec.name, "KILL", all=True)
        if not await _wait(exited, KILL_WAIT_S):
            raise AgentError(f"container {rec.name} did not die after SIGKILL", name=rec.name)

    async def _launch(self, rec: ContainerRecord, *, raise_errors: bool) -> None:
        """One ``runc run --detach``: the container writes to its log files."""
        name = rec.name
        try:
            pid = await asyncio.to_thread(self._launch_blocking, rec)
        except Exception as exc:
            log.error("could not start %s: %s", name, exc)
            self._advance(rec, StartFailed(str(exc)))
            if raise_errors:
                raise
            return
        self._exited[name] = asyncio.Event()
        self._advance(rec, Started(pid))
        log.info("started %s (pid %d)", name, pid)

    def _launch_blocking(self, rec: ContainerRecord) -> int:
        # One thread hop for both: each hop costs a wake-up of the event loop.
        self._ensure_runtime(rec)
        return self._run_process(rec)

    def _run_process(self, rec: ContainerRecord) -> int:
        cdir = self.store.container_dir(rec.name)
        state_dir = self.runc.root / rec.name
        if state_dir.exists():
            # A stopped leftover (e.g. from before a host reboot) blocks the id.
            # Checked first: a runc call costs as much as the run itself.
            with contextlib.suppress(NotFound):
                self.runc.delete(rec.name, force=True)
        out, err = open_raw_fds(cdir / "logs")
        try:
            return self.runc.run_detached(
                rec.name,
                cdir / "bundle",
                stdout_fd=out,
                stderr_fd=err,
                pid_file=cdir / "bundle" / "pid",
            )
        except BaseException:
            # runc removes a container it failed to start; should it have
            # left one behind anyway, the next start must not find it.
            if state_dir.exists():
                with contextlib.suppress(Exception):
                    self.runc.delete(rec.name, force=True)
            raise
        finally:
            os.close(out)
            os.close(err)

    # --- preparing and tearing down ---------------------------------------------------

    async def _prepare(self, rec: ContainerRecord) -> None:
        """Pull the image and mount the rootfs, and meanwhile plumb the network
        (neither needs the other), then write the bundle. On failure the
        caller tears down whatever was done."""
        results = await asyncio.gather(
            asyncio.to_thread(self._prepare_rootfs, rec),
            asyncio.to_thread(self._plumb_network, rec),
            return_exceptions=True,
        )
        # gather waited for both: a teardown never races a step still running.
        for result in results:
            if isinstance(result, BaseException):
                raise result
        image = results[0]
        assert not isinstance(image, BaseException)
        await asyncio.to_thread(self._write_bundle, rec, image.config)
        rec.prepared = True

    def _prepare_rootfs(self, rec: ContainerRecord) -> Image:
        # No refresh: a digest (what the control plane sends) or a tag pulled
        # before is used as stored, like Docker's "missing" pull policy.
        image = self.images.pull(rec.request.image, refresh=False)
        rec.image_digest = image.digest
        rec.lowers = [str(p) for p in self.images.lower_dirs(image)]
        self._mount_rootfs(rec)
        return image

    def _ensure_runtime(self, rec: ContainerRecord) -> None:
        """Rootfs mounted and network plumbed: already true unless the host
        rebooted (mounts and netns do not survive that), so launches stay fast."""
        if not os.path.ismount(self.store.container_dir(rec.name) / "rootfs"):
            self._mount_rootfs(rec)
        if not (rec.netns_path and os.path.exists(rec.netns_path)):
            self._plumb_network(rec)

    def _mount_rootfs(self, rec: ContainerRecord) -> None:
        cdir = self.store.container_dir(rec.name)
        for sub in ("rootfs", "upper", "work"):
            (cdir / sub).mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(cdir / "rootfs"):
            overlay.mount(
                [Path(p) for p in rec.lowers], cdir / "upper", cdir / "work", cdir / "rootfs"
            )

    def _plumb_network(self, rec: ContainerRecord) -> None:
        """Netns, veth, address, /etc files and published ports (idempotent)."""
        att = self.network.attach(rec.name, list(rec.request.ports))
        rec.address, rec.netns_path = att.address, att.netns_path
        write_etc_files(
            self.store.container_dir(rec.name) / "etc", hostname_for(rec.request), att.address
        )

    def _write_bundle(self, rec: ContainerRecord, image_config: dict[str, Any]) -> None:
        req = rec.request
        cdir = self.store.container_dir(rec.name)
        cfg = image_config.get("config") or {}
        uid, gid, groups = spec.resolve_user(cdir / "rootfs", req.user or cfg.get("User") or None)
        document = spec.build_spec(
            rootfs=cdir / "rootfs",
            args=resolve_args(image_config, req),
            env=merge_env(image_config, req),
            cwd=req.working_dir or cfg.get("WorkingDir") or "/",
            uid=uid,
            gid=gid,
            additional_gids=groups,
            hostname=hostname_for(req),
            netns_path=rec.netns_path,
            mounts=[
                spec.Mount("/etc/hosts", cdir / "etc" / "hosts"),
                spec.Mount("/etc/resolv.conf", cdir / "etc" / "resolv.conf"),
            ],
            limits=req.limits,
            cgroups_path=self._cgroups_path(rec.name),
        )
        (cdir / "bundle").mkdir(exist_ok=True)
        (cdir / "bundle" / "config.json").write_text(json.dumps(document))

    async def _teardown(self, rec: ContainerRecord) -> None:
        """Undo everything a container holds; each step is idempotent, so an
        interrupted teardown is finished by the next one."""
        name = rec.name
        tailer = self._tailers.pop(name, None)
        if tailer is not None:
            await tailer.close()
        self._forget_pidfd(name)
        self._exited.pop(name, None)
        await asyncio.to_thread(self._teardown_blocking, rec)

    def _teardown_blocking(self, rec: ContainerRecord) -> None:
        name, cdir = rec.name, self.store.container_dir(rec.name)
        for step in (
            lambda: self.runc.delete(name, force=True),
            lambda: self.network.detach(name),
            lambda: overlay.unmount(cdir / "rootfs") if os.path.ismount(cdir / "rootfs") else None,
        ):
            try:
                step()
            except NotFound:
                pass
            except Exception:
                log.exception("removing %s: a cleanup step failed", name)
        if os.path.ismount(cdir / "rootfs"):
            # Never delete through a mount: that would delete inside the overlay.
            raise AgentError(f"cannot remove {name}: its rootfs is still mounted", name=name)
        if cdir.exists():
            self.store.delete(name)

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
                exited, code = self._poll_exit(name, rec.sup.pid)
                if exited:
                    await self._on_exit(rec, code)
            if self._lock(name).locked():
                continue  # an operation is under way; it owns the record for now
            if Action.LAUNCH in self._advance(rec, Tick()):
                self._spawn(self._relaunch(name), f"restart-{name}")

    async def _relaunch(self, name: str) -> None:
        async with self._lock(name):
            rec = self.records.get(name)
            if rec is not None and rec.sup.state == S.STARTING and rec.sup.pid is None:
                log.info("restarting %s (restart %d)", name, rec.sup.restart_count)
                await self._launch(rec, raise_errors=False)

    def _poll_exit(self, name: str, pid: int) -> tuple[bool, int | None]:
        """(has the process exited, its exit code if we can know it)."""
        if name not in self._pidfds:
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return self._watch_adopted(name, pid)
            return (True, exit_code_of(status)) if wpid else (False, None)
        readable, _, _ = select.select([self._pidfds[name]], [], [], 0)
        if not readable:
            return False, None
        self._forget_pidfd(name)
        return True, _reap_if_child(pid)

    def _watch_adopted(self, name: str, pid: int) -> tuple[bool, int | None]:
        """Not our child: hold a pidfd, which becomes readable when it exits
        (and, unlike a bare pid, cannot be fooled by pid reuse)."""
        try:
            self._pidfds[name] = os.pidfd_open(pid)
        except ProcessLookupError:
            return True, None
        return False, None

    def _forget_pidfd(self, name: str) -> None:
        fd = self._pidfds.pop(name, None)
        if fd is not None:
            os.close(fd)

    async def _on_exit(self, rec: ContainerRecord, code: int | None) -> None:
        """Read the OOM flag (before runc delete removes the cgroup), delete
        runc's record, flush the last log line, and let the policy decide."""
        name = rec.name
        try:
            oom = await asyncio.to_thread(cgroups.oom_killed, self._cgroups_path(name))
        except Exception as exc:
            log.warning("cannot read the OOM flag of %s: %s", name, exc)
            oom = False
        await self._delete_runc(name)
        tailer = self._tailers.get(name)
        if tailer is not None:
            tailer.pump(final=True)
        self._advance(rec, Exited(code, oom_killed=oom))
        log.info("%s exited (code %s%s): now %s", name, code, ", OOM" if oom else "", rec.sup.state)
        event = self._exited.get(name)
        if event is not None:
            event.set()

    async def _adopt(self, rec: ContainerRecord) -> None:
        """Take a stored container back after an agent restart."""
        name = rec.name
        state = await asyncio.to_thread(self.runc.state, name)
        status = state.get("status") if state else None
        self._exited[name] = asyncio.Event()
        if rec.sup.pid is None:
            if rec.sup.state == S.STARTING:
                # The agent died between "launch" and "started": runc's word decides.
                if status == "running" and state:
                    self._advance(rec, Started(int(state["pid"])))
                    self._watch_adopted(name, int(state["pid"]))
                    return
                await self._delete_runc(name)
                self._advance(rec, StartFailed("the agent restarted while starting it"))
            elif status is not None:
                await self._delete_runc(name)  # a stopped leftover
            return
        if status in ("running", "paused") and state and int(state["pid"]) == rec.sup.pid:
            exited, code = self._poll_exit(name, rec.sup.pid)
            if not exited:
                log.info("re-adopted %s (pid %d)", name, rec.sup.pid)
                if rec.sup.state == S.STOPPING:
                    self._spawn(self.stop(name), f"stop-{name}")  # finish the stop it began
                return
        else:
            code = _reap_if_child(rec.sup.pid)
        log.info("%s exited while the agent was away", name)
        await self._on_exit(rec, code)

    # --- helpers -------------------------------------------------------------------

    def _advance(self, rec: ContainerRecord, event: Event) -> Actions:
        """Feed ``event`` to the policy and persist the result if it changed."""
        sup, actions = transition(rec.sup, event, time.time(), rec.request.restart, self.backoff)
        if sup != rec.sup:
            rec.sup = sup
            if rec.name in self.records:
                self.store.save(rec, durable=False)
        return actions

    async def _signal(self, name: str, sig: str, *, all: bool = False) -> None:
        """Signal for a stop: a process that is already gone is what we wanted
        (the tick reaps it), not an error."""
        with contextlib.suppress(NotFound, Conflict):
            await asyncio.to_thread(self.runc.kill, name, sig, all=all)

    async def _delete_runc(self, name: str) -> None:
        try:
            await asyncio.to_thread(self.runc.delete, name, force=True)
        except NotFound:
            pass
        except Exception:
            log.exception("runc delete %s failed", name)

    def _start_tailer(self, rec: ContainerRecord) -> None:
        tailer = LogTailer(
            rec.name, self.store.container_dir(rec.name) / "logs", self.log_config, self._redis
        )
        self._tailers[rec.name] = tailer
        tailer.start()

    def _cgroups_path(self, name: str) -> str:
        return f"/{self._cgroup_prefix}-{name}"

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _get(self, name: str) -> ContainerRecord:
        rec = self.records.get(name)
        if rec is None:
            raise NotFound(f"no container named {name!r}", name=name)
        return rec

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_note_failure)
        return task

    async def _complete(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run an operation to its end even if the caller goes away (an HTTP
        client that disconnects): a create or stop cut in the middle would
        leave runc, mounts and the record disagreeing. Shutdown waits for it."""
        task: asyncio.Task[T] = self._spawn(coro, "operation")
        return await asyncio.shield(task)


def _note_failure(task: asyncio.Task[Any]) -> None:
    # Retrieving the exception keeps asyncio from warning about it when the
    # caller that would have received it went away.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("task %s failed: %s", task.get_name(), exc)


def _reap_if_child(pid: int) -> int | None:
    """The exit code when ``pid`` is our (exited) child, else None (unknowable)."""
    try:
        wpid, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return exit_code_of(status) if wpid else None


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), max(timeout, 0.0))
    except TimeoutError:
        return False
    return True


async def _iterate(lines: list[wire.LogLine]) -> AsyncIterator[wire.LogLine]:
    for line in lines:
        yield line


def _time(ts: float | None) -> str | None:
    return rfc3339(ts) if ts else None


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


async def _exec_stream(
    proc: Any, pid_file: Path, timeout_s: float
) -> AsyncIterator[tuple[str, bytes | int]]:
    """Stream a ``runc exec``'s output without threads: its pipes are read
    by the event loop as they become readable."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    pipes = {"stdout": proc.stdout, "stderr": proc.stderr}
    for stream, pipe in pipes.items():
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        loop.add_reader(fd, _reader(fd, stream, queue, loop))
    open_pipes, finished = len(pipes), False
    deadline = loop.time() + timeout_s
    try:
        while open_pipes:
            try:
                stream, chunk = await asyncio.wait_for(queue.get(), deadline - loop.time())
            except TimeoutError:
                break
            if not chunk:
                open_pipes -= 1
                continue
            yield stream, chunk
        if open_pipes:
            log.info("exec timed out after %.1fs: killing it", timeout_s)
            code = await asyncio.to_thread(stop_exec, proc, pid_file)
        else:
            code = await asyncio.to_thread(proc.wait)
        finished = True
        yield "exit", code
    finally:
        for pipe in pipes.values():
            loop.remove_reader(pipe.fileno())
            pipe.close()
        if not finished:  # the caller went away: do not leave the command running
            await asyncio.to_thread(stop_exec, proc, pid_file)
        pid_file.unlink(missing_ok=True)


def _reader(
    fd: int, stream: str, queue: asyncio.Queue[tuple[str, bytes]], loop: asyncio.AbstractEventLoop
) -> Callable[[], None]:
    def on_readable() -> None:
        try:
            data = os.read(fd, EXEC_READ)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(fd)  # EOF: b"" tells the consumer this pipe is done
        queue.put_nowait((stream, data))

    return on_readable
