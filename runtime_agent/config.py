"""The agent's configuration, read once from the environment.

Every setting is a ``PAAS_AGENT_*`` variable read through the host toolkit's
settings helper (:mod:`runtime_agent.host.settings`), under the same rules
as the control plane's: ``<NAME>_FILE`` for any of them (secrets stay out of
``ps``), an empty value means unset, absolute paths, finite numbers, and a
bad value stops the agent at start with a message naming the variable.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from runtime_agent.host.settings import SettingError, Settings
from runtime_agent.images.layers import UnpackLimits
from runtime_agent.net import policy
from runtime_agent.net.names import IFNAME_RE, IFNAME_RULE, NFT_TABLE_RE, NFT_TABLE_RULE
from runtime_agent.wire import ID_RANGE_BASE, ID_RANGE_SIZE, REGISTRY_HOST_RE

log = logging.getLogger("runtime_agent.config")

PREFIX = "PAAS_AGENT_"
# A missing or bad PAAS_AGENT_* variable (the helper's error, under the name
# the agent has always used for it).
ConfigError = SettingError

Env = Mapping[str, str]
USERNS_MIN_ID = ID_RANGE_BASE  # the first host id a range may start at (wire.py)


@dataclass(frozen=True)
class AgentConfig:
    root: Path
    token: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 7070
    bridge: str = "paas0"
    subnet: IPv4Network = IPv4Network("10.88.0.0/16")
    nft_table: str = "paas_agent"
    runc_binary: str = "runc"
    redis_url: str | None = None
    registry_user: str | None = None
    registry_password: str | None = None
    registry_ca: Path | None = None
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    backoff_reset_s: float = 600.0
    log_max_bytes: int = 10 * 1024 * 1024
    log_max_files: int = 5
    log_backlog_bytes: int = 64 * 1024 * 1024
    stop_grace_s: float = 10.0
    max_body_bytes: int = 1024 * 1024
    drain_timeout_s: float = 10.0  # a create in flight may be pulling an image
    # The registry the credentials are for (host[:port]); None: no credentials sent.
    registry: str | None = None
    # User namespaces (see wire.IdRange).
    userns_min_id: int = USERNS_MIN_ID
    default_id_range: int = USERNS_MIN_ID  # for requests without an id_range
    # Limits of a container whose request leaves them unset.
    default_memory_bytes: int = 512 * 1024 * 1024
    default_cpus: float = 1.0
    default_pids: int = 512
    default_writable_bytes: int = 128 * 1024 * 1024
    # Network policy (runtime_agent/net/policy.py).
    router_ports: tuple[int, ...] = ()
    dns_port: int | None = None
    build_subnet: IPv4Network = policy.DEFAULT_BUILD_SUBNET
    blocked_networks: tuple[IPv4Network, ...] = policy.DEFAULT_BLOCKED
    allowed_networks: tuple[IPv4Network, ...] = ()
    # Who may reach this host's route ports from outside (net/ports.py).
    router_sources: tuple[IPv4Network, ...] = ()
    # PAAS_AGENT_ROUTER_SOURCES is set: it wins over the join's and the control
    # plane's lists (runtime_agent/router_sources.py).
    router_sources_pinned: bool = False
    # Caps on a layer being unpacked (images/layers.py), like the upload intake's.
    layer_max_bytes: int = 8 * 1024**3
    layer_max_entry_bytes: int = 4 * 1024**3
    layer_max_entries: int = 500_000
    layer_max_ratio: int = 200
    # The operator's TLS pair; None: the agent's own, made in ROOT/tls (api/tls.py).
    tls_cert: Path | None = None
    tls_key: Path | None = None

    # The data root's layout (see the agent contract); one place to read it.
    @property
    def layers_dir(self) -> Path:
        return self.root / "layers"

    @property
    def containers_dir(self) -> Path:
        return self.root / "containers"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    @property
    def net_dir(self) -> Path:
        return self.root / "net"

    def registry_credentials(self, registry: str) -> tuple[str, str] | None:
        """The credentials callback the image store wants: only for the one
        registry they belong to. An image reference names its registry, so
        any other answer would hand our password to whatever host a
        request names."""
        if self.registry_user is None or self.registry_password is None:
            return None
        if self.registry is None or registry.lower() != self.registry.lower():
            if registry:
                log.info("not sending registry credentials to %s (they are for %s)",
                         registry, self.registry)  # fmt: skip
            return None
        return self.registry_user, self.registry_password

    def unpack_limits(self) -> UnpackLimits:
        return UnpackLimits(
            max_bytes=self.layer_max_bytes,
            max_entry_bytes=self.layer_max_entry_bytes,
            max_entries=self.layer_max_entries,
            max_ratio=self.layer_max_ratio,
        )

    def policy_settings(self) -> policy.PolicySettings:
        return policy.PolicySettings(
            router_ports=self.router_ports,
            dns_port=self.dns_port,
            build_subnet=self.build_subnet,
            blocked=self.blocked_networks,
            allowed=self.allowed_networks,
            router_sources=self.router_sources,
        )

    @classmethod
    def from_env(cls, env: Env | None = None, *, generate_token: bool = True) -> AgentConfig:
        read = Settings(os.environ if env is None else env, PREFIX)
        root, tls_cert, tls_key = tls_settings(read)
        host, port = read.listen("LISTEN", "127.0.0.1:7070")
        return cls(
            root=root,
            token=load_token(read, root, generate=generate_token),
            listen_host=host,
            listen_port=port,
            bridge=read.matching("BRIDGE", "paas0", IFNAME_RE, IFNAME_RULE),
            subnet=read.subnet("SUBNET", "10.88.0.0/16"),
            nft_table=read.matching("NFT_TABLE", "paas_agent", NFT_TABLE_RE, NFT_TABLE_RULE),
            runc_binary=read.text("RUNC", "runc"),
            redis_url=read.optional("REDIS_URL"),
            **_registry(read),
            **_backoff(read),
            log_max_bytes=read.integer("LOG_MAX_BYTES", 10 * 1024 * 1024, minimum=4096),
            log_max_files=read.integer("LOG_MAX_FILES", 5, minimum=1),
            # Below this a skip could not keep one whole line (MAX_LINE) of the newest output.
            log_backlog_bytes=read.integer(
                "LOG_BACKLOG_BYTES", 64 * 1024 * 1024, minimum=256 * 1024
            ),
            stop_grace_s=read.number("STOP_GRACE_S", 10.0, minimum=0.0),
            max_body_bytes=read.integer("MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            # aiohttp reads a drain deadline of 0 as "wait forever": keep it positive.
            drain_timeout_s=read.number("DRAIN_TIMEOUT_S", 10.0, minimum=0.1),
            **_isolation(read),
            router_sources=router_sources(read, root),
            router_sources_pinned=read.raw("ROUTER_SOURCES") is not None,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )


def tls_settings(read: Settings) -> tuple[Path, Path | None, Path | None]:
    """(ROOT, TLS_CERT, TLS_KEY): the operator's pair goes together, or neither
    is set and the agent serves its own (also read by ``runtime_agent.join``)."""
    root = read.path("ROOT", Path("/var/lib/paas-agent"))
    cert, key = read.optional_path("TLS_CERT"), read.optional_path("TLS_KEY")
    if (cert is None) != (key is None):
        raise ConfigError(f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY go together; set both")
    for name, path in (("TLS_CERT", cert), ("TLS_KEY", key)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{PREFIX}{name}: {path} is not a file")
    return root, cert, key


def _registry(read: Settings) -> dict[str, Any]:
    user, password = read.optional("REGISTRY_USER"), read.optional("REGISTRY_PASSWORD")
    if (user is None) != (password is None):
        raise ConfigError(
            f"{PREFIX}REGISTRY_USER and {PREFIX}REGISTRY_PASSWORD go together; set both"
        )
    registry = read.optional("REGISTRY")
    if user is not None and registry is None:
        raise ConfigError(
            f"{PREFIX}REGISTRY_USER needs {PREFIX}REGISTRY (host:port): credentials "
            "are only ever sent to the registry they are for"
        )
    if registry is not None and not REGISTRY_HOST_RE.fullmatch(registry):
        raise ConfigError(f"{PREFIX}REGISTRY must be host[:port], got {registry!r}")
    ca = read.optional_path("REGISTRY_CA")
    if ca is not None and not ca.is_file():
        raise ConfigError(f"{PREFIX}REGISTRY_CA: {ca} is not a file")
    return {
        "registry": registry,
        "registry_user": user,
        "registry_password": password,
        "registry_ca": ca,
    }


def _isolation(read: Settings) -> dict[str, Any]:
    """User namespaces, default limits, network policy and unpack caps."""
    min_id = read.integer("USERNS_MIN_ID", USERNS_MIN_ID, minimum=ID_RANGE_SIZE)
    default_range = read.integer("USERNS_DEFAULT_ID", min_id, minimum=min_id)
    if min_id % ID_RANGE_SIZE or default_range % ID_RANGE_SIZE:
        raise ConfigError(
            f"{PREFIX}USERNS_MIN_ID and {PREFIX}USERNS_DEFAULT_ID must be multiples of "
            f"{ID_RANGE_SIZE}"
        )
    if default_range + ID_RANGE_SIZE > 2**32 - 1:
        raise ConfigError(f"{PREFIX}USERNS_DEFAULT_ID leaves no room for a range below 2^32")
    mib = 1024 * 1024
    return {
        "userns_min_id": min_id,
        "default_id_range": default_range,
        "default_memory_bytes": read.integer("DEFAULT_MEMORY_BYTES", 512 * mib, minimum=4 * mib),
        "default_cpus": read.number("DEFAULT_CPUS", 1.0, minimum=0.01),
        "default_pids": read.integer("DEFAULT_PIDS", 512, minimum=1),
        "default_writable_bytes": read.integer("DEFAULT_WRITABLE_BYTES", 128 * mib, minimum=mib),
        "router_ports": tuple(
            _port(read, "ROUTER_PORTS", p) for p in read.items("ROUTER_PORTS", [])
        ),
        "dns_port": read.integer("DNS_PORT", 0, minimum=0, maximum=65535) or None,
        "build_subnet": read.subnet("BUILD_SUBNET", str(policy.DEFAULT_BUILD_SUBNET)),
        "blocked_networks": _networks(read, "BLOCKED_NETWORKS", policy.DEFAULT_BLOCKED),
        "allowed_networks": _networks(read, "ALLOWED_NETWORKS", ()),
        "layer_max_bytes": read.integer("LAYER_MAX_BYTES", 8 * 1024**3, minimum=1024),
        "layer_max_entry_bytes": read.integer("LAYER_MAX_ENTRY_BYTES", 4 * 1024**3, minimum=1),
        "layer_max_entries": read.integer("LAYER_MAX_ENTRIES", 500_000, minimum=1),
        "layer_max_ratio": read.integer("LAYER_MAX_RATIO", 200, minimum=1),
    }


def _port(read: Settings, name: str, item: str) -> int:
    if not item.isdigit() or not 0 < int(item) < 65536:
        raise ConfigError(f"{PREFIX}{name}: {item!r} is not a port number")
    return int(item)


def _networks(
    read: Settings, name: str, default: tuple[IPv4Network, ...]
) -> tuple[IPv4Network, ...]:
    """A comma-separated list of IPv4 networks (``10.0.0.0/8,192.168.1.5/32``)."""
    return _parse_networks(read.items(name, [str(n) for n in default]), PREFIX + name)


def _parse_networks(items: list[str], where: str) -> tuple[IPv4Network, ...]:
    out = []
    for item in items:
        try:
            out.append(IPv4Network(item, strict=True))
        except ValueError as exc:
            raise ConfigError(f"{where}: {item!r} is not an IPv4 network: {exc}") from None
    return tuple(out)


# In ROOT, written by runtime_agent.join and the API's PUT /v1/router-sources.
ROUTER_SOURCES_FILE = "router_sources"


def router_sources(read: Settings, root: Path) -> tuple[IPv4Network, ...]:
    """The router's (and health check's) source addresses: ROUTER_SOURCES
    (or ROUTER_SOURCES_FILE) if set, else what the control plane gave at
    join (ROOT/router_sources), else none: route ports then answer no one
    from outside (deny by default; net/ports.py)."""
    if read.raw("ROUTER_SOURCES") is None:
        path = root / ROUTER_SOURCES_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        items = [i.strip() for i in text.replace("\n", ",").split(",") if i.strip()]
        return _parse_networks(items, f"{path} (written by the join)")
    return _networks(read, "ROUTER_SOURCES", ())


def _backoff(read: Settings) -> dict[str, Any]:
    base = read.number("BACKOFF_BASE_S", 1.0, minimum=0.01)
    cap = read.number("BACKOFF_CAP_S", 300.0, minimum=0.01)
    if cap < base:
        raise ConfigError(
            f"{PREFIX}BACKOFF_CAP_S ({cap}) must not be below {PREFIX}BACKOFF_BASE_S ({base})"
        )
    return {
        "backoff_base_s": base,
        "backoff_cap_s": cap,
        "backoff_reset_s": read.number("BACKOFF_RESET_S", 600.0, minimum=0.0),
    }


# Short tokens can be guessed over a network; 16 bytes of entropy is the floor.
MIN_TOKEN_LENGTH = 16


def load_token(read: Settings, root: Path, *, generate: bool) -> str:
    """The API token: from the environment or its file, else ROOT/token.

    With ``generate`` an agent without a configured token makes one (once) and
    keeps it in ROOT/token, mode 0600, so the operator can copy it to the
    control plane; without it, the agent refuses to start.
    """
    token = read.optional("TOKEN")
    if token is None:
        token = _token_from_root(root, generate=generate)
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(
            f"{PREFIX}TOKEN must be at least {MIN_TOKEN_LENGTH} characters without spaces"
        )
    return token


def _token_from_root(root: Path, *, generate: bool) -> str:
    path = root / "token"
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the agent token {path}: {exc}") from None
    if existing:
        return existing
    if not generate:
        raise ConfigError(
            f"no API token: set {PREFIX}TOKEN or {PREFIX}TOKEN_FILE "
            f"(or let the agent generate {path})"
        )
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    # O_EXCL: two agents starting at once must not each write their own token.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.warning("no PAAS_AGENT_TOKEN given: generated one into %s (mode 0600)", path)
    return token
