"""The agent's configuration, read once from the environment.

Every setting is a ``PAAS_AGENT_*`` variable read through a tiny typed helper
that fails loudly: a bad value stops the agent at start with a message naming
the variable, instead of surfacing as a strange failure an hour later.
Secrets can come from a file (``<NAME>_FILE``) so they stay out of ``ps`` and
of process environments that other tools dump.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

from runtime_agent.host.errors import AgentError

log = logging.getLogger("runtime_agent.config")

PREFIX = "PAAS_AGENT_"
# Linux limits interface names to 15 bytes; the bridge name lands in netlink.
IFNAME_MAX = 15
IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")


class ConfigError(AgentError):
    """A ``PAAS_AGENT_*`` variable is missing or has a bad value."""

    code = "config_error"
    permanent = True


Env = Mapping[str, str]


def _raw(env: Env, name: str) -> str | None:
    value = env.get(PREFIX + name)
    # An empty variable is treated as unset, like most shells' ${VAR:-default}.
    return value if value not in (None, "") else None


def env_str(env: Env, name: str, default: str | None = None) -> str | None:
    value = _raw(env, name)
    return value if value is not None else default


def env_int(env: Env, name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, got {number}")
    return number


def env_float(env: Env, name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{PREFIX}{name} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, got {number}")
    return number


def env_path(env: Env, name: str, default: Path | None = None) -> Path | None:
    value = _raw(env, name)
    if value is None:
        return default
    path = Path(value)
    # A relative path would depend on the directory the agent was started from.
    if not path.is_absolute():
        raise ConfigError(f"{PREFIX}{name} must be an absolute path, got {value!r}")
    return path


def env_secret(env: Env, name: str) -> str | None:
    """``NAME`` or ``NAME_FILE`` (a file holding the value); setting both is an error."""
    value = _raw(env, name)
    file_path = env_path(env, name + "_FILE")
    if value is not None and file_path is not None:
        raise ConfigError(f"set {PREFIX}{name} or {PREFIX}{name}_FILE, not both")
    if file_path is None:
        return value
    try:
        text = file_path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{PREFIX}{name}_FILE: cannot read {file_path}: {exc}") from None
    if not text:
        raise ConfigError(f"{PREFIX}{name}_FILE: {file_path} is empty")
    return text


def env_listen(env: Env, name: str, default: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:7070`` for IPv6)."""
    value = env_str(env, name, default) or default
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{PREFIX}{name} must be host:port like 127.0.0.1:7070, got {value!r}")
    return host, int(port_text)


def env_subnet(env: Env, name: str, default: str) -> IPv4Network:
    value = env_str(env, name, default) or default
    try:
        subnet = IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name} must be an IPv4 network like {default}: {exc}") from None
    # The gateway, the broadcast and at least one container need addresses.
    if subnet.prefixlen > 29:
        raise ConfigError(f"{PREFIX}{name} is too small ({value}); use /29 or larger")
    return subnet


def env_ifname(env: Env, name: str, default: str) -> str:
    value = env_str(env, name, default) or default
    if not IFNAME_RE.fullmatch(value):
        raise ConfigError(
            f"{PREFIX}{name} must be at most {IFNAME_MAX} ASCII letters, digits, '-' or '_' "
            f"starting with a letter, got {value!r}"
        )
    return value


def env_identifier(env: Env, name: str, default: str) -> str:
    value = env_str(env, name, default) or default
    if not value.replace("_", "").isalnum() or not value[0].isalpha() or len(value) > 64:
        raise ConfigError(
            f"{PREFIX}{name} must be letters, digits and '_' starting with a letter, got {value!r}"
        )
    return value


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
    stop_grace_s: float = 10.0
    max_body_bytes: int = 1024 * 1024
    drain_timeout_s: float = 10.0  # a create in flight may be pulling an image

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
        """The credentials callback the image store wants (the same for every registry)."""
        if self.registry_user is None or self.registry_password is None:
            return None
        return self.registry_user, self.registry_password

    @classmethod
    def from_env(cls, env: Env | None = None, *, generate_token: bool = True) -> AgentConfig:
        env = os.environ if env is None else env
        root = env_path(env, "ROOT", Path("/var/lib/paas-agent"))
        assert root is not None
        host, port = env_listen(env, "LISTEN", "127.0.0.1:7070")
        registry_user = env_str(env, "REGISTRY_USER")
        registry_password = env_secret(env, "REGISTRY_PASSWORD")
        if (registry_user is None) != (registry_password is None):
            raise ConfigError(
                f"{PREFIX}REGISTRY_USER and {PREFIX}REGISTRY_PASSWORD go together; set both"
            )
        registry_ca = env_path(env, "REGISTRY_CA")
        if registry_ca is not None and not registry_ca.is_file():
            raise ConfigError(f"{PREFIX}REGISTRY_CA: {registry_ca} is not a file")
        backoff_base = env_float(env, "BACKOFF_BASE_S", 1.0, minimum=0.01)
        backoff_cap = env_float(env, "BACKOFF_CAP_S", 300.0, minimum=0.01)
        if backoff_cap < backoff_base:
            raise ConfigError(
                f"{PREFIX}BACKOFF_CAP_S ({backoff_cap}) must not be below "
                f"{PREFIX}BACKOFF_BASE_S ({backoff_base})"
            )
        return cls(
            root=root,
            token=load_token(env, root, generate=generate_token),
            listen_host=host,
            listen_port=port,
            bridge=env_ifname(env, "BRIDGE", "paas0"),
            subnet=env_subnet(env, "SUBNET", "10.88.0.0/16"),
            nft_table=env_identifier(env, "NFT_TABLE", "paas_agent"),
            runc_binary=env_str(env, "RUNC", "runc") or "runc",
            redis_url=env_secret(env, "REDIS_URL"),
            registry_user=registry_user,
            registry_password=registry_password,
            registry_ca=registry_ca,
            backoff_base_s=backoff_base,
            backoff_cap_s=backoff_cap,
            backoff_reset_s=env_float(env, "BACKOFF_RESET_S", 600.0, minimum=0.0),
            log_max_bytes=env_int(env, "LOG_MAX_BYTES", 10 * 1024 * 1024, minimum=4096),
            log_max_files=env_int(env, "LOG_MAX_FILES", 5, minimum=1),
            stop_grace_s=env_float(env, "STOP_GRACE_S", 10.0, minimum=0.0),
            max_body_bytes=env_int(env, "MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            # aiohttp reads a drain deadline of 0 as "wait forever": keep it positive.
            drain_timeout_s=env_float(env, "DRAIN_TIMEOUT_S", 10.0, minimum=0.1),
        )


# Short tokens can be guessed over a network; 16 bytes of entropy is the floor.
MIN_TOKEN_LENGTH = 16


def load_token(env: Env, root: Path, *, generate: bool) -> str:
    """The API token: from the environment or its file, else ROOT/token.

    With ``generate`` an agent without a configured token makes one (once) and
    keeps it in ROOT/token, mode 0600, so the operator can copy it to the
    control plane; without it, the agent refuses to start.
    """
    token = env_secret(env, "TOKEN")
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
