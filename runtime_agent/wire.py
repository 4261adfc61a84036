"""The wire format between the control plane and the agent.

This is the one module both ``paas`` and ``runtime_agent`` read. Requests are
parsed with :func:`parse_*` functions that raise :class:`InvalidRequest`
naming the offending field, so the API can answer 400 with a useful message.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from runtime_agent.host.errors import InvalidRequest

API_VERSION = "v1"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# Container states, as the agent reports them (supervisor's state machine).
class ContainerState(StrEnum):
    CREATED = "created"  # bundle and network ready, process not started
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "restarting"  # exited, waiting out the crash backoff before a restart
    STOPPING = "stopping"
    EXITED = "exited"  # stopped by request or exited and not to be restarted
    DEAD = "dead"  # gave up: restart limit reached or the runtime failed for good


class RestartPolicyName(StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    host_port: int
    host_ip: str = "0.0.0.0"  # like docker -p: all addresses unless one is given
    protocol: str = "tcp"
    # A route port (paas/hosts/upstreams.py): answered only for the agent's
    # router sources (PAAS_AGENT_ROUTER_SOURCES) and the container's own
    # app on the host (runtime_agent/net/ports.py); refused to anyone else.
    router_only: bool = False


@dataclass(frozen=True)
class RestartPolicy:
    name: RestartPolicyName = RestartPolicyName.NO
    max_retries: int = 0  # 0 = unlimited (only for on-failure)


@dataclass(frozen=True)
class Limits:
    """Unset (None) fields take the agent's defaults (``PAAS_AGENT_DEFAULT_*``)."""

    memory_bytes: int | None = None
    cpu_shares: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100_000
    pids: int | None = None
    writable_bytes: int | None = None  # size cap of the container's writable layer


# User namespaces: uid/gid 0..65535 inside a container map to host ids
# host_id..host_id+65535. The control plane gives every team its own range
# (paas/accounts/idranges.py: base + team index * 65536), so two teams'
# processes and files never share a host id; the agent refuses ranges below
# its PAAS_AGENT_USERNS_MIN_ID or not aligned to the range size.
ID_RANGE_SIZE = 65536
# Where the ranges start (16 Mi): far above every regular and system user,
# with room for 65280 ranges below 2^32. Range 0 (host ids ID_RANGE_BASE..)
# is the agent's default for requests that name no team.
ID_RANGE_BASE = 1 << 24


@dataclass(frozen=True)
class IdRange:
    host_id: int  # first host uid (and gid) of the range; container root maps here
    size: int = ID_RANGE_SIZE


@dataclass(frozen=True)
class CreateContainer:
    """``POST /v1/containers``: like ``docker create`` (+ ``start`` if asked)."""

    name: str
    image: str
    cmd: list[str] | None = None  # overrides the image's Cmd
    entrypoint: list[str] | None = None  # overrides the image's Entrypoint
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    ports: list[PortBinding] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    labels: dict[str, str] = field(default_factory=dict)
    start: bool = True
    # The team's id range; None takes the agent's default range (one shared
    # range for callers that name no team: tests, an operator's curl).
    id_range: IdRange | None = None
    # Containers with the same group (the app) reach each other; no other
    # container can. None puts the container in a group of its own.
    network_group: str | None = None


@dataclass(frozen=True)
class RegistryAuth:
    """The credential for ONE pull, sent beside a create (``registry_auth``),
    never part of the container's request: the agent uses it for that pull
    only and keeps it nowhere (not in the container's record, not in a log).

    Either a bearer ``token`` (the platform's registry: minted by the control
    plane for one repository, expiring in minutes) or a ``username`` and
    ``password`` (another registry the app's owners gave credentials for).
    It is sent to ``registry`` only, which must be the image's registry.
    """

    registry: str
    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never the secret, whoever logs this object
        return f"RegistryAuth(registry={self.registry!r}, user={self.username!r})"


REGISTRY_HOST_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?")
_SECRET_MAX = 16384


def parse_registry_auth(value: Any) -> RegistryAuth | None:
    if value is None:
        return None
    data = _typed(value, dict, "registry_auth")
    registry = _require(data, "registry", str, "registry_auth.")
    if not REGISTRY_HOST_RE.fullmatch(registry):
        raise InvalidRequest(
            "registry_auth.registry must be host[:port]", field="registry_auth.registry"
        )
    token = _optional(data, "token", str, "registry_auth.", None)
    username = _optional(data, "username", str, "registry_auth.", None)
    password = _optional(data, "password", str, "registry_auth.", None)
    if (token is None) == (username is None or password is None):
        raise InvalidRequest(
            "registry_auth needs either a token or a username and a password",
            field="registry_auth",
        )
    for name, secret in (("token", token), ("username", username), ("password", password)):
        if secret is not None and (not secret or len(secret) > _SECRET_MAX or "\n" in secret):
            raise InvalidRequest(
                f"registry_auth.{name} must be 1-{_SECRET_MAX} characters on one line",
                field=f"registry_auth.{name}",
            )
    return RegistryAuth(registry=registry, token=token, username=username, password=password)


@dataclass(frozen=True)
class ExecRequest:
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    timeout_s: float = 60.0


@dataclass
class ContainerInfo:
    name: str
    image: str
    image_digest: str
    state: ContainerState
    pid: int | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    next_restart_at: str | None = None
    address: str | None = None
    ports: list[PortBinding] = field(default_factory=list)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    labels: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogLine:
    time: str  # RFC 3339, UTC
    stream: str  # "stdout" | "stderr"
    line: str
    # The line's number in its container's log: 1, 2, 3... A reader that sees
    # a number jump knows the lines between were rotated away before it read
    # them. 0: not numbered (written by an agent from before numbering).
    n: int = 0


@dataclass(frozen=True)
class Stats:
    cpu_usage_ns: int
    memory_bytes: int
    memory_limit_bytes: int | None
    pids: int


# --- parsing -----------------------------------------------------------------


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise InvalidRequest(f"{where}{key} is required", field=f"{where}{key}")
    return _typed(data[key], kind, f"{where}{key}")


def _typed(value: Any, kind: type, name: str) -> Any:
    # bool is an int in Python; a port of `true` is still a mistake.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequest(f"{name} must be {kind.__name__}", field=name)
    return value


def _optional(data: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    if data.get(key) is None:
        return default
    return _typed(data[key], kind, f"{where}{key}")


def _str_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{name} must be a list of strings", field=name)
    return list(value)


def _str_map(value: Any, name: str, key_re: re.Pattern[str] | None = None) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidRequest(f"{name} must be an object of strings", field=name)
    for k in value:
        if key_re and not key_re.fullmatch(k):
            raise InvalidRequest(f"{name}: {k!r} is not a valid name", field=name)
    return dict(value)


def _port(value: Any, name: str) -> int:
    port = _typed(value, int, name)
    if not 1 <= port <= 65535:
        raise InvalidRequest(f"{name} must be between 1 and 65535", field=name)
    return int(port)


def _host_ip(value: str, where: str) -> str:
    """An IPv4 address, parsed (never pattern-matched): it ends up in an nft
    ruleset, where a newline would start a rule of the caller's choosing."""
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise InvalidRequest(
            f"{where}host_ip must be an IPv4 address like 127.0.0.1", field=where + "host_ip"
        ) from None


def parse_ports(value: Any) -> list[PortBinding]:
    if not isinstance(value, list):
        raise InvalidRequest("ports must be a list", field="ports")
    out = []
    for i, item in enumerate(value):
        where = f"ports[{i}]."
        if not isinstance(item, dict):
            raise InvalidRequest(f"ports[{i}] must be an object", field=f"ports[{i}]")
        protocol = _optional(item, "protocol", str, where, "tcp")
        if protocol != "tcp":
            raise InvalidRequest(
                f"{where}protocol: only tcp is supported", field=where + "protocol"
            )
        out.append(
            PortBinding(
                container_port=_port(item.get("container_port"), where + "container_port"),
                host_port=_port(item.get("host_port"), where + "host_port"),
                host_ip=_host_ip(_optional(item, "host_ip", str, where, "0.0.0.0"), where),
                router_only=_optional(item, "router_only", bool, where, False),
            )
        )
    return out


def parse_restart(value: Any) -> RestartPolicy:
    """Accepts ``"no"``, ``"always"``, ``"on-failure"``, ``"on-failure:5"`` or an object."""
    if isinstance(value, str):
        name, _, count = value.partition(":")
        value = {"name": name, "max_retries": int(count) if count.isdigit() else 0}
        if count and not count.isdigit():
            raise InvalidRequest("restart: retries must be a whole number", field="restart")
    if not isinstance(value, dict):
        raise InvalidRequest("restart must be a string or an object", field="restart")
    try:
        name = RestartPolicyName(value.get("name", "no"))
    except ValueError:
        choices = ", ".join(p.value for p in RestartPolicyName)
        raise InvalidRequest(
            f"restart.name must be one of {choices}", field="restart.name"
        ) from None
    retries = _optional(value, "max_retries", int, "restart.", 0)
    if retries < 0:
        raise InvalidRequest("restart.max_retries must be >= 0", field="restart.max_retries")
    return RestartPolicy(name=name, max_retries=retries)


def parse_limits(value: Any) -> Limits:
    if not isinstance(value, dict):
        raise InvalidRequest("limits must be an object", field="limits")
    w = "limits."
    limits = Limits(
        memory_bytes=_optional(value, "memory_bytes", int, w, None),
        cpu_shares=_optional(value, "cpu_shares", int, w, None),
        cpu_quota_us=_optional(value, "cpu_quota_us", int, w, None),
        cpu_period_us=_optional(value, "cpu_period_us", int, w, 100_000),
        pids=_optional(value, "pids", int, w, None),
        writable_bytes=_optional(value, "writable_bytes", int, w, None),
    )
    if limits.memory_bytes is not None and limits.memory_bytes < 4 * 1024 * 1024:
        raise InvalidRequest("limits.memory_bytes must be at least 4 MiB", field=w + "memory_bytes")
    if limits.pids is not None and limits.pids < 1:
        raise InvalidRequest("limits.pids must be at least 1", field=w + "pids")
    if limits.writable_bytes is not None and limits.writable_bytes < 1024 * 1024:
        raise InvalidRequest(
            "limits.writable_bytes must be at least 1 MiB", field=w + "writable_bytes"
        )
    return limits


def parse_id_range(value: Any) -> IdRange | None:
    """``{"host_id": N}`` (size, if given, must be 65536); range policy
    (minimum, alignment) is the agent's to check."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("id_range must be an object", field="id_range")
    host_id = _require(value, "host_id", int, "id_range.")
    size = _optional(value, "size", int, "id_range.", ID_RANGE_SIZE)
    if size != ID_RANGE_SIZE:
        raise InvalidRequest(f"id_range.size must be {ID_RANGE_SIZE}", field="id_range.size")
    if not 0 < host_id <= 2**32 - 1 - size:
        raise InvalidRequest("id_range.host_id is out of range", field="id_range.host_id")
    return IdRange(host_id=host_id, size=size)


def parse_network_group(value: Any) -> str | None:
    if value is None:
        return None
    group = _typed(value, str, "network_group")
    if not NAME_RE.fullmatch(group):
        raise InvalidRequest(
            "network_group must be 1-63 lowercase letters, digits, '_', '.' or '-'",
            field="network_group",
        )
    return str(group)


def parse_create(data: Any) -> CreateContainer:
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", field="")
    name = _require(data, "name", str, "")
    if not NAME_RE.fullmatch(name):  # fullmatch: "$" alone lets a trailing newline in
        raise InvalidRequest(
            "name must be 1-63 lowercase letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            field="name",
        )
    image = _require(data, "image", str, "")
    if not image or any(c.isspace() for c in image):
        raise InvalidRequest("image must be a reference like registry/name:tag", field="image")
    cmd = data.get("cmd")
    entrypoint = data.get("entrypoint")
    return CreateContainer(
        name=name,
        image=image,
        cmd=_str_list(cmd, "cmd") if cmd is not None else None,
        entrypoint=_str_list(entrypoint, "entrypoint") if entrypoint is not None else None,
        env=_str_map(data.get("env", {}), "env", ENV_KEY_RE),
        working_dir=_optional(data, "working_dir", str, "", None),
        user=_optional(data, "user", str, "", None),
        hostname=_optional(data, "hostname", str, "", None),
        ports=parse_ports(data.get("ports", [])),
        limits=parse_limits(data.get("limits", {})),
        restart=parse_restart(data.get("restart", "no")),
        labels=_str_map(data.get("labels", {}), "labels"),
        start=_optional(data, "start", bool, "", True),
        id_range=parse_id_range(data.get("id_range")),
        network_group=parse_network_group(data.get("network_group")),
    )


def parse_exec(data: Any) -> ExecRequest:
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", field="")
    cmd = _str_list(_require(data, "cmd", list, ""), "cmd")
    if not cmd:
        raise InvalidRequest("cmd must not be empty", field="cmd")
    timeout = _optional(data, "timeout_s", (int, float), "", 60.0)  # type: ignore[arg-type]
    return ExecRequest(
        cmd=cmd,
        env=_str_map(data.get("env", {}), "env", ENV_KEY_RE),
        working_dir=_optional(data, "working_dir", str, "", None),
        timeout_s=float(timeout),
    )
