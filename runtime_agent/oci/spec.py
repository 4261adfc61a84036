"""The OCI runtime spec (runc's config.json) for a container.

The defaults follow Docker's (moby's) so that an image behaves here as it
does under ``docker run``: the same capabilities, the same masked and
read-only /proc paths, the same /dev. Everything that loosens isolation is
absent on purpose; there is no "privileged" switch.
"""

from __future__ import annotations

import posixpath
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime_agent.host import safepath
from runtime_agent.host.errors import InvalidRequest
from runtime_agent.oci import seccomp, userns
from runtime_agent.wire import IdRange, Limits

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default set less CAP_NET_RAW (CapEff 00000000a80405fb): raw and
# packet sockets would let a tenant forge source addresses and ARP answers
# on the shared bridge; ping still works through ICMP datagram sockets
# (net/sandbox.py sets ping_group_range). Never add CAP_SYS_RESOURCE: the
# agent's own bounding set lacks it on our hosts and runc then fails with
# "unable to apply caps".
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# (type, major, minor) the container may use; everything else is denied by
# the first rule. mknod of any node stays allowed (CAP_MKNOD is in the
# default set) but a node made that way cannot be opened.
ALLOWED_DEVICES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),  # null
    ("c", 1, 5, "rwm"),  # zero
    ("c", 1, 7, "rwm"),  # full
    ("c", 1, 8, "rwm"),  # random
    ("c", 1, 9, "rwm"),  # urandom
    ("c", 5, 0, "rwm"),  # tty
    ("c", 5, 2, "rwm"),  # ptmx
    ("c", 136, None, "rwm"),  # pts/*
)

# Docker gives containers the daemon's open-files limit (1048576 under
# systemd); we cannot raise a hard limit past our own without
# CAP_SYS_RESOURCE, so we cap it there.
NOFILE_WANTED = 1_048_576
# When the caller leaves the pids limit unset (the agent fills its default first).
FALLBACK_PIDS = 512


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted into the container (e.g. /etc/hosts)."""

    destination: str
    source: Path
    readonly: bool = False


# --- the spec ---------------------------------------------------------------


def build_spec(
    *,
    rootfs: Path,
    args: Sequence[str],
    env: Sequence[str] | Mapping[str, str],
    cwd: str,
    uid: int,
    gid: int,
    additional_gids: Sequence[int],
    hostname: str,
    netns_path: str | None,
    mounts: Sequence[Mount],
    limits: Limits,
    cgroups_path: str,
    id_range: IdRange | None = None,
    userns_path: str | None = None,
) -> dict[str, Any]:
    """The full OCI runtime spec for one container.

    With ``id_range`` the container gets a user namespace mapping its ids
    0..65535 onto that host range (runtime_agent/oci/userns.py): the one at
    ``userns_path`` (which owns the netns at ``netns_path``: see
    runtime_agent/oci/rootfs.py), else a new one.
    """
    if not args:
        raise InvalidRequest("the container has no command to run", field="cmd")
    if not posixpath.isabs(cwd):
        raise InvalidRequest(f"working dir {cwd!r} must be absolute", field="working_dir")
    linux: dict[str, Any] = {
        "namespaces": _namespaces(netns_path, id_range is not None, userns_path),
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
        "resources": _resources(limits),
        "cgroupsPath": cgroups_path,
        "seccomp": seccomp.default_profile(),
    }
    if id_range is not None:
        linux.update(userns.spec_fields(id_range))
    return {
        "ociVersion": OCI_VERSION,
        "process": _process(args, _env_list(env, hostname), cwd, uid, gid, additional_gids),
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": _default_mounts() + [_bind(m) for m in mounts],
        "linux": linux,
    }


def _env_list(env: Sequence[str] | Mapping[str, str], hostname: str) -> list[str]:
    items = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env)
    keys = {item.partition("=")[0] for item in items}
    # Like Docker: a PATH when the image sets none, and HOSTNAME.
    if "PATH" not in keys:
        items.insert(0, f"PATH={DEFAULT_PATH}")
    if "HOSTNAME" not in keys:
        items.append(f"HOSTNAME={hostname}")
    return items


def _process(
    args: Sequence[str],
    env: list[str],
    cwd: str,
    uid: int,
    gid: int,
    additional_gids: Sequence[int],
) -> dict[str, Any]:
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "terminal": False,
        "user": {"uid": uid, "gid": gid, "additionalGids": list(additional_gids)},
        "args": list(args),
        "env": env,
        "cwd": cwd,
        # Inheritable and ambient stay empty: ambient capabilities would survive
        # execve for a non-root user, and inheritable ones let a binary with
        # inheritable file capabilities gain them (CVE-2022-24769). Root keeps
        # the set through execve anyway; a non-root user ends with none.
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": _nofile(), "soft": _nofile()}],
        "noNewPrivileges": True,
    }


def _nofile() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(NOFILE_WANTED, hard)


def _default_mounts() -> list[dict[str, Any]]:
    nosuid_noexec_nodev = ["nosuid", "noexec", "nodev"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": nosuid_noexec_nodev},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": [*nosuid_noexec_nodev, "ro"],
        },
        {
            # The container's own cgroups, read-only, so runtimes that size
            # themselves from their memory/CPU limits (JVM, Node) can see them.
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*nosuid_noexec_nodev, "relatime", "ro"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*nosuid_noexec_nodev, "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": nosuid_noexec_nodev,
        },
    ]


def _bind(mount: Mount) -> dict[str, Any]:
    if not posixpath.isabs(mount.destination):
        raise InvalidRequest(f"mount destination {mount.destination!r} must be absolute")
    options = ["rbind", "rprivate", "nosuid", "nodev"]
    if mount.readonly:
        options.append("ro")
    return {
        "destination": mount.destination,
        "type": "bind",
        "source": str(mount.source),
        "options": options,
    }


def _namespaces(
    netns_path: str | None, user: bool, userns_path: str | None
) -> list[dict[str, str]]:
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if user:
        namespaces.append({"type": "user", **({"path": userns_path} if userns_path else {})})
    # A path joins the namespace the network code prepared (veth, address,
    # routes); without one the container gets a fresh, unconnected one.
    network = {"type": "network", "path": netns_path} if netns_path else {"type": "network"}
    namespaces.append(network)
    return namespaces


def _resources(limits: Limits) -> dict[str, Any]:
    devices: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for kind, major, minor, access in ALLOWED_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        devices.append(rule)
    # Never without a pids limit: a fork bomb would take the host's pid space.
    pids = limits.pids if limits.pids is not None else FALLBACK_PIDS
    out: dict[str, Any] = {"devices": devices, "pids": {"limit": pids}}
    if limits.memory_bytes is not None:
        # memory+swap equal to memory: the container cannot swap its way
        # past the limit; at the limit it is OOM-killed.
        out["memory"] = {"limit": limits.memory_bytes, "swap": limits.memory_bytes}
    cpu: dict[str, Any] = {}
    if limits.cpu_shares is not None:
        cpu["shares"] = limits.cpu_shares
    if limits.cpu_quota_us is not None:
        cpu["quota"] = limits.cpu_quota_us
        cpu["period"] = limits.cpu_period_us
    if cpu:
        out["cpu"] = cpu
    return out


# --- users ------------------------------------------------------------------

# passwd and group files in an image are untrusted input: small caps on what
# we read, and every path is resolved as if rootfs were "/".
_MAX_DB_BYTES = 1 << 20


def resolve_user(rootfs: Path, user: str | None) -> tuple[int, int, list[int]]:
    """``user`` as Docker takes it (``name``, ``uid``, ``name:group``,
    ``uid:gid``...) resolved against the image's /etc/passwd and /etc/group.

    Returns (uid, gid, additional gids). A numeric uid unknown to the image is
    allowed with gid 0, as in Docker; an unknown name is an error.
    """
    name_or_uid, _, group = (user or "0").partition(":")
    passwd = _parse_db(_read_in_root(rootfs, "/etc/passwd"), 7)
    entry = _find(passwd, name_or_uid, uid_field=2)
    if entry is None and not name_or_uid.isdigit():
        raise InvalidRequest(
            f"user {name_or_uid!r} is not in the image's /etc/passwd", field="user"
        )
    uid = int(entry[2]) if entry else int(name_or_uid)
    gid = int(entry[3]) if entry else 0
    groups = _parse_db(_read_in_root(rootfs, "/etc/group"), 4)
    if group:
        gid = _group_id(groups, group)
    username = entry[0] if entry else None
    extra = [int(g[2]) for g in groups if username and username in g[3].split(",")]
    return uid, gid, sorted({g for g in extra if g != gid})


def _group_id(groups: list[list[str]], group: str) -> int:
    entry = _find(groups, group, uid_field=2)
    if entry is not None:
        return int(entry[2])
    if group.isdigit():
        return int(group)
    raise InvalidRequest(f"group {group!r} is not in the image's /etc/group", field="user")


def _find(rows: list[list[str]], key: str, *, uid_field: int) -> list[str] | None:
    for row in rows:
        if row[0] == key:
            return row
    if key.isdigit():
        for row in rows:
            if row[uid_field] == key:
                return row
    return None


def _parse_db(text: str, fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) != fields or line.startswith("#"):
            continue
        if not parts[2].isdigit() or (fields == 7 and not parts[3].isdigit()):
            continue
        rows.append(parts)
    return rows


def _read_in_root(rootfs: Path, path: str) -> str:
    """A small regular file at ``path`` inside ``rootfs``, links followed as
    the container would see them (safepath.read_in_root), so an image cannot
    point us at a host file. Anything but a regular file reads as empty."""
    with safepath.opened_dir(rootfs) as root_fd:
        data = safepath.read_in_root(root_fd, path, limit=_MAX_DB_BYTES)
    return "" if data is None else data.decode(errors="replace")
