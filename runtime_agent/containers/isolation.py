"""What a create request leaves to the agent: the id range of a request that
names none, and the limits it leaves unset (``PAAS_AGENT_DEFAULT_*``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from runtime_agent import wire
from runtime_agent.config import AgentConfig
from runtime_agent.net import links
from runtime_agent.oci import userns

CPU_PERIOD_US = 100_000


def id_range_for(req: wire.CreateContainer, config: AgentConfig) -> wire.IdRange:
    """The request's range (checked against the agent's policy), else the
    agent's default range."""
    id_range = req.id_range or wire.IdRange(host_id=config.default_id_range)
    userns.check_range(id_range, min_id=config.userns_min_id)
    return id_range


def limits_for(req: wire.CreateContainer, config: AgentConfig) -> wire.Limits:
    """The request's limits with every unset one taken from the agent's settings."""
    limits = req.limits
    cpu_quota = limits.cpu_quota_us
    if cpu_quota is None and limits.cpu_shares is None:
        cpu_quota = int(config.default_cpus * limits.cpu_period_us)
    return dataclasses.replace(
        limits,
        memory_bytes=limits.memory_bytes or config.default_memory_bytes,
        cpu_quota_us=cpu_quota,
        pids=limits.pids or config.default_pids,
        writable_bytes=limits.writable_bytes or config.default_writable_bytes,
    )


def cgroup_limits(limits: wire.Limits) -> wire.Limits:
    """What the container's cgroup gets: its memory limit plus its writable
    layer, which lives in a tmpfs (oci/rootfs.py) whose pages the kernel
    charges to the container's memory cgroup. Without the addition a
    container filling its writable layer would be OOM-killed before it
    ever saw ENOSPC, and the disk it writes would eat its app's memory."""
    if limits.memory_bytes is None or limits.writable_bytes is None:
        return limits
    return dataclasses.replace(limits, memory_bytes=limits.memory_bytes + limits.writable_bytes)


def userns_path_for(netns_path: str | None) -> str | None:
    """The user namespace that owns a container's netns (net/links.py)."""
    return str(links.userns_path(Path(netns_path).name)) if netns_path else None
