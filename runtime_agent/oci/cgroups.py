"""Usage figures and the OOM verdict of a container, read from its cgroup
files (the ``cgroupsPath`` of its spec).

Our hosts run cgroup v1 with a cgroup2 mount at /sys/fs/cgroup/unified
("hybrid"); a pure cgroup v2 host is handled too. Controllers are found
through /proc/self/mountinfo rather than assumed paths, because hosts mount
them differently (``cpu`` and ``cpuacct`` apart here, ``cpu,cpuacct``
together elsewhere).

The cgroup disappears with ``runc delete``: read :func:`oom_killed` (and any
last :func:`stats`) after the container exits and *before* deleting it.
"""

from __future__ import annotations

from pathlib import Path

from runtime_agent.host.errors import NotFound
from runtime_agent.wire import Stats

MOUNTINFO = Path("/proc/self/mountinfo")
# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit value.
_V1_UNLIMITED = 1 << 62


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    out = []
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, super_opts = fields[sep + 1], fields[sep + 3]
        if fstype in ("cgroup", "cgroup2"):
            out.append((fields[4], fstype, set(super_opts.split(","))))
    return out


def _v1_dir(controller: str, cgroups_path: str) -> Path | None:
    for point, fstype, opts in _mounts():
        if fstype == "cgroup" and controller in opts:
            return Path(point) / cgroups_path.lstrip("/")
    return None


def _v2_dir(cgroups_path: str) -> Path | None:
    for point, fstype, _ in _mounts():
        if fstype == "cgroup2":
            return Path(point) / cgroups_path.lstrip("/")
    return None


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (``memory.stat``, ``memory.events``, ``cpu.stat``)."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def stats(cgroups_path: str) -> Stats:
    """CPU time (ns), memory in use and its limit, and the number of tasks.

    Memory is counted as ``docker stats`` does: usage minus inactive page
    cache, which the kernel reclaims before it would OOM-kill anyone.
    """
    memory = _v1_dir("memory", cgroups_path)
    if memory is not None and memory.is_dir():
        return _v1_stats(cgroups_path, memory)
    unified = _v2_dir(cgroups_path)
    if unified is not None and (unified / "memory.current").exists():
        return _v2_stats(unified)
    raise NotFound(f"no cgroup at {cgroups_path}: the container is gone", cgroup=cgroups_path)


def _v1_stats(cgroups_path: str, memory: Path) -> Stats:
    cpuacct = _v1_dir("cpuacct", cgroups_path)
    pids = _v1_dir("pids", cgroups_path)
    usage = _read_int(memory / "memory.usage_in_bytes")
    inactive = _keyed(memory / "memory.stat").get("total_inactive_file", 0)
    limit = _read_int(memory / "memory.limit_in_bytes")
    return Stats(
        cpu_usage_ns=_read_int(cpuacct / "cpuacct.usage") if cpuacct else 0,
        memory_bytes=max(usage - inactive, 0),
        memory_limit_bytes=None if limit >= _V1_UNLIMITED else limit,
        pids=_read_int(pids / "pids.current") if pids else 0,
    )


def _v2_stats(unified: Path) -> Stats:
    usage = _read_int(unified / "memory.current")
    inactive = _keyed(unified / "memory.stat").get("inactive_file", 0)
    limit = (unified / "memory.max").read_text().strip()
    return Stats(
        cpu_usage_ns=_keyed(unified / "cpu.stat").get("usage_usec", 0) * 1000,
        memory_bytes=max(usage - inactive, 0),
        memory_limit_bytes=None if limit == "max" else int(limit),
        pids=_read_int(unified / "pids.current"),
    )


def oom_killed(cgroups_path: str) -> bool:
    """Whether the kernel OOM-killed any process of the container's cgroup.

    Read it before ``runc delete``, which removes the cgroup and the counter
    with it; a missing cgroup raises :class:`NotFound` rather than guessing.
    """
    counters = []
    memory = _v1_dir("memory", cgroups_path)
    if memory is not None and (memory / "memory.oom_control").exists():
        counters.append(_keyed(memory / "memory.oom_control").get("oom_kill", 0))
    unified = _v2_dir(cgroups_path)
    if unified is not None and (unified / "memory.events").exists():
        counters.append(_keyed(unified / "memory.events").get("oom_kill", 0))
    if not counters:
        raise NotFound(f"no cgroup at {cgroups_path}: the container is gone", cgroup=cgroups_path)
    return any(n > 0 for n in counters)
