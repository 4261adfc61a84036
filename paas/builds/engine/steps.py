"""Running one build step in a runc container on an overlay of the image's
layers so far. The overlay's upper directory is the step's new layer.

The container is started with ``runc run --keep`` in the foreground: runc
stays its parent, so its exit status is the command's, and ``--keep`` leaves
the cgroup in place until we have read the OOM counter. Output (stdout and
stderr merged, as a person reads a build log) streams line by line through
a pipe. Everything a step sets up (container, mount, netns) is undone in
``finally``, whatever happened.

User namespace: a step runs as the root of its team's id range
(``StepEnv.id_range``), never as host root, like the team's app containers
(runtime_agent/oci/userns.py). The layers below it are idmapped into the
range, so the image's root-owned files appear root-owned inside; a layer an
earlier step of this build wrote is already owned by the range's ids on
disk and is mounted as it is (``host_view``). The upper directory is owned
by the range's root, so what the step writes lands on disk owned by the
range's host ids; :func:`pack_layer` (``id_range=``) records those owners
shifted back to the container's view, so images stay as they were.

The step's network namespace is made owned by its user namespace
(HostNetwork.attach with ``id_range``, runc joins both by path), rather
than giving /sys as a read-only bind: with the ownership right the kernel
lets runc mount a fresh sysfs, exactly as for the agent's containers, and
the step still holds no CAP_NET_ADMIN over its interfaces (not in the
bounding set, no_new_privs). Without a network, runc makes both
namespaces itself, the new netns owned by the new user namespace."""

from __future__ import annotations

import contextlib
import json
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from paas.builds.engine import gate, ids
from paas.builds.engine.config import BuildLimits
from paas.builds.engine.errors import BuildCancelled, BuildFailed
from paas.builds.engine.files import lookup, make_parents, resolve
from paas.builds.engine.plan import BindMount, RunStep
from runtime_agent.host import safepath
from runtime_agent.host.errors import HostError, UnsafePath
from runtime_agent.net import links, sandbox
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci import cgroups, overlay, userns
from runtime_agent.oci.etcfiles import write_etc_files
from runtime_agent.oci.runc import Runc
from runtime_agent.oci.spec import Mount, build_spec, resolve_user
from runtime_agent.wire import ID_RANGE_BASE, IdRange, Limits

MAX_LINE = 4000
HOSTNAME = "build"
NO_NETWORK_ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class StepEnv:
    """What every step of one build shares."""

    runc: Runc
    network: HostNetwork | None
    limits: BuildLimits
    cgroup_parent: str = "paas-build"
    # Given to every step at run time only (host CA bundle, proxies,
    # secrets: see outbound.py); the step's own env wins.
    extra_env: Mapping[str, str] = field(default_factory=dict)
    extra_mounts: tuple[BindMount, ...] = ()
    cancel: threading.Event | None = None  # set: kill the running step
    # The team's host ids: step root is id_range.host_id (see the module doc).
    id_range: IdRange = IdRange(host_id=ID_RANGE_BASE)


def run_step(
    step: RunStep,
    *,
    cid: str,
    lowers: Sequence[Path],
    step_dir: Path,
    env: StepEnv,
    say: Callable[[str], None],
    host_view: Collection[Path] = frozenset(),
) -> Path:
    """Run ``step`` and return its upper directory (the new layer, already
    reduced to ``step.keep``, owned by ``env.id_range``'s host ids).
    ``host_view``: the ``lowers`` already owned by the range's ids (earlier
    steps' uppers), mounted without an idmap. Raises :class:`BuildFailed`
    on a non-zero exit, a timeout or an OOM kill."""
    if env.extra_env or env.extra_mounts:
        step = replace(
            step, env={**env.extra_env, **step.env}, mounts=[*step.mounts, *env.extra_mounts]
        )
    upper, work = step_dir / "upper", step_dir / "work"
    for d in (upper, work):
        d.mkdir(parents=True)
    # For the reaper, should this worker die before the finally below runs.
    (step_dir / "cid").write_text(cid)
    for m in step.mounts:
        if not m.read_only:
            ids.own_tree(m.source, env.id_range)  # a download cache the step writes
    with safepath.opened_dir(upper) as upper_fd:
        for directory in step.mkdirs:
            rel = resolve(lowers, directory, step.name)
            os.close(make_parents(upper_fd, lowers, f"{rel}/x"))
        # What we made there (no tenant has written yet) moves into the
        # range, like everything the step itself will write.
        ids.shift_tree(upper_fd, env.id_range, into_range=True)
    cgroups_path = f"/{env.cgroup_parent}/{cid}"
    attached = False
    try:
        gate_dir = gate.open_gate(cid, env.id_range)
        rootfs = gate_dir / "rootfs"
        rootfs.mkdir()
        _mount_rootfs(lowers, host_view, upper, work, rootfs, env.id_range)
        netns_path, address = None, NO_NETWORK_ADDRESS
        if env.network is not None:
            att = env.network.attach(cid, id_range=env.id_range)
            attached = True
            netns_path, address = att.netns_path, att.address
            # No IPv6 and unprivileged ping, as in the agent's containers.
            sandbox.seal(netns_path)
        spec = _spec(
            step, gate_dir, step_dir, netns_path, address, env.limits, cgroups_path, env.id_range
        )
        (step_dir / "config.json").write_text(json.dumps(spec))
        code, timed_out = _run(env.runc, cid, step_dir, env.limits.wall_time_s, say, env.cancel)
        oom = _oom_killed(cgroups_path)
    finally:
        _cleanup(env, cid, attached)
    if env.cancel is not None and env.cancel.is_set():
        raise BuildCancelled(step=step.name)
    _check(step, code, timed_out, oom, env.limits)
    _drop_mountpoints(upper, lowers, step)
    if step.keep is not None:
        _keep_only(upper, step.keep)
    safepath.remove_tree(work)
    return upper


def _mount_rootfs(
    lowers: Sequence[Path],
    host_view: Collection[Path],
    upper: Path,
    work: Path,
    rootfs: Path,
    id_range: IdRange,
) -> None:
    """The overlay of ``lowers`` (idmapped into ``id_range`` unless already in
    it) under ``upper``, which the range's root owns."""
    os.chown(upper, id_range.host_id, id_range.host_id)
    fds: list[int] = []
    try:
        for lower in lowers:
            fds.append(userns.idmapped_tree(lower, None if lower in host_view else id_range))
        overlay.mount_lower_fds(fds, upper, work, rootfs)
    finally:
        for fd in fds:
            os.close(fd)  # the overlay holds its own references


def _spec(
    step: RunStep,
    gate_dir: Path,
    step_dir: Path,
    netns_path: str | None,
    address: str,
    limits: BuildLimits,
    cgroups_path: str,
    id_range: IdRange,
) -> dict[str, object]:
    hosts, resolv = write_etc_files(step_dir / "etc", HOSTNAME, address)
    for f in (hosts, resolv):
        os.chown(f, id_range.host_id, id_range.host_id)  # root's inside, as in Docker
    rootfs = gate_dir / "rootfs"
    uid, gid, groups = resolve_user(rootfs, step.user)
    binds = [
        ("/etc/hosts", hosts, True),
        ("/etc/resolv.conf", resolv, True),
        *((m.destination, m.source, m.read_only) for m in step.mounts),
    ]
    # runc reads every bind source as the step's root: through the gate.
    mounts = [
        Mount(dest, gate.bind(gate_dir, source, i), readonly=ro)
        for i, (dest, source, ro) in enumerate(binds)
    ]
    return build_spec(
        rootfs=rootfs,
        args=step.argv,
        env=step.env,
        cwd=step.workdir,
        uid=uid,
        gid=gid,
        additional_gids=groups,
        hostname=HOSTNAME,
        netns_path=netns_path,
        mounts=mounts,
        limits=Limits(
            memory_bytes=limits.memory_bytes,
            cpu_quota_us=int(limits.cpus * 100_000),
            cpu_period_us=100_000,
            pids=limits.pids,
        ),
        cgroups_path=cgroups_path,
        id_range=id_range,
        # The user namespace that owns the step's netns (see the module doc);
        # without a network runc makes a new one.
        userns_path=str(links.userns_path(Path(netns_path).name)) if netns_path else None,
    )


def _run(
    runc: Runc,
    cid: str,
    bundle: Path,
    wall_time_s: float,
    say: Callable[[str], None],
    cancel: threading.Event | None = None,
) -> tuple[int, bool]:
    """``runc run`` in the foreground; stream its output; kill it at the
    wall-time limit or when ``cancel`` is set. Returns (exit code, timed out)."""
    proc = runc.run_foreground(cid, bundle)
    assert proc.stdout is not None
    deadline = time.monotonic() + wall_time_s
    timed_out = False
    next_kill = 0.0
    buffer = b""
    fd = proc.stdout.fileno()
    try:
        while True:
            if cancel is not None and cancel.is_set() and time.monotonic() >= next_kill:
                # Again every second: a kill sent before runc made the
                # container finds nothing to kill.
                next_kill = time.monotonic() + 1.0
                with contextlib.suppress(HostError):  # it may be exiting already
                    runc.kill(cid, "KILL", all=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not timed_out:
                timed_out = True
                with contextlib.suppress(HostError):  # it may be exiting already
                    runc.kill(cid, "KILL", all=True)
                deadline = time.monotonic() + 30  # for the pipe to close
                continue
            if remaining <= 0:
                break
            # Short waits: a cancel is noticed within a quarter second.
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.25))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                say(line.decode(errors="replace")[:MAX_LINE])
        if buffer:
            say(buffer.decode(errors="replace")[:MAX_LINE])
        return proc.wait(timeout=30), timed_out
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _oom_killed(cgroups_path: str) -> bool:
    try:
        return cgroups.oom_killed(cgroups_path)
    except HostError:
        return False


def _cleanup(env: StepEnv, cid: str, attached: bool) -> None:
    errors: list[Exception] = []
    for action in (
        lambda: env.runc.delete(cid, force=True),
        lambda: gate.close(cid),
        lambda: env.network.detach(cid) if attached and env.network else None,
    ):
        try:
            action()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _check(step: RunStep, code: int, timed_out: bool, oom: bool, limits: BuildLimits) -> None:
    if timed_out:
        raise BuildFailed(
            f"{step.name} did not finish within {limits.wall_time_s:.0f} s and was stopped",
            step=step.name,
            command=step.command,
            exit_code=code,
        )
    if oom:
        raise BuildFailed(
            f"{step.name} ran out of memory (limit {limits.memory_bytes // (1 << 20)} MiB) "
            "and was killed",
            step=step.name,
            command=step.command,
            exit_code=code,
        )
    if code != 0:
        raise BuildFailed(
            f"{step.name} failed with exit code {code}",
            step=step.name,
            command=step.command,
            exit_code=code,
        )


# The step's upper directory is the tenant's: its process may have put a
# link anywhere, /app or /app's parents included. Everything below works on
# directory fds with no-follow (safepath): a link is removed or kept as a
# link, never descended into.


def _drop_mountpoints(upper: Path, lowers: Sequence[Path], step: RunStep) -> None:
    """Mount points runc had to create (a bind target missing from the image)
    are not the step's output: leave them out of the layer."""
    targets = ["/etc/hosts", "/etc/resolv.conf"] + [m.destination for m in step.mounts]
    with safepath.opened_dir(upper) as upper_fd:
        for target in targets:
            _drop_mountpoint(upper_fd, lowers, target.strip("/"))


def _drop_mountpoint(upper_fd: int, lowers: Sequence[Path], rel: str) -> None:
    try:
        parent, name = safepath.open_parent(upper_fd, rel)
    except (FileNotFoundError, NotADirectoryError, UnsafePath):
        return  # a parent is missing, a file or a link: no mount point in this layer
    with safepath.closing(parent):
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if lookup(lowers, rel) is not None:
            # Present below: only drop it if the step did not change it
            # (a bind mount point gets no content of its own).
            if stat.S_ISDIR(st.st_mode) and _is_empty_dir(parent, name):
                os.rmdir(name, dir_fd=parent)
            return
        safepath.remove(parent, name)
    _prune_empty_parents(upper_fd, rel)


def _is_empty_dir(parent: int, name: str) -> bool:
    with safepath.closing(safepath.open_dir_beneath(parent, name)) as fd:
        return not os.listdir(fd)


def _prune_empty_parents(upper_fd: int, rel: str) -> None:
    parts = rel.split("/")[:-1]
    while parts:
        try:
            parent, name = safepath.open_parent(upper_fd, "/".join(parts))
        except (OSError, UnsafePath):
            return
        with safepath.closing(parent):
            try:
                os.rmdir(name, dir_fd=parent)  # only an empty real directory goes
            except OSError:
                return
        parts.pop()


def _keep_only(upper: Path, keep: tuple[str, ...]) -> None:
    """Remove everything in ``upper`` but the ``keep`` paths and their
    parents (a buildpack's output, e.g. ``app/.venv``). A kept path or a
    parent that the step replaced by a link stays a link (or is removed):
    nothing is ever walked through it."""
    keep_parts = [tuple(k.strip("/").split("/")) for k in keep]

    def walk(dir_fd: int, rel: tuple[str, ...]) -> None:
        for name, st in safepath.list_dir(dir_fd):
            sub = (*rel, name)
            if sub in keep_parts:
                continue  # a kept path: everything below stays
            if any(k[: len(sub)] == sub for k in keep_parts) and stat.S_ISDIR(st.st_mode):
                with safepath.closing(safepath.open_dir_beneath(dir_fd, name)) as child:
                    walk(child, sub)  # a parent of a kept path
                continue
            safepath.remove(dir_fd, name)

    with safepath.opened_dir(upper) as upper_fd:
        walk(upper_fd, ())
