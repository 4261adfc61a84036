"""Settings of the build engine, as one frozen dataclass the caller (the
Celery task) fills from Django settings; the engine never reads settings
itself, so tests and the benchmark configure it directly."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the client (requests, python-dxf) is imported on first use
    from runtime_agent.images.registry import RegistryClient


@dataclass(frozen=True)
class RegistrySettings:
    host: str  # "127.0.0.1:5000": what image references start with
    username: str | None = None
    password: str | None = None
    scheme: str = "https"
    ca_file: str | None = None
    # A registry in token mode whose signing key we hold: a challenge's scope
    # is answered with a token minted here (no token endpoint involved).
    token_source: Callable[[str], str] | None = None

    def client(self) -> RegistryClient:
        from runtime_agent.images.registry import RegistryClient

        return RegistryClient(
            self.host,
            username=self.username,
            password=self.password,
            scheme=self.scheme,
            ca_file=self.ca_file,
            token_source=self.token_source,
        )


@dataclass(frozen=True)
class BuildLimits:
    """Per build step: a step past them fails the build, not the worker."""

    memory_bytes: int = 2 << 30
    cpus: float = 1.0
    pids: int = 1024
    wall_time_s: float = 900.0


@dataclass(frozen=True)
class BuildNetwork:
    """The bridge build containers are attached to (the runtime agent's
    HostNetwork: a netns and veth per step, outbound masquerade)."""

    state_dir: Path
    bridge: str
    subnet: IPv4Network
    nft_table: str
    # Build steps are denied the host and local networks like app containers
    # (runtime_agent.net.policy); a proxy or private index on the host or the
    # LAN is reached only through this allow-list.
    allowed: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True)
class HostTrust:
    """What build steps need to reach package indexes from this host: the
    CA bundle the host trusts (mounted read-only into every step; behind a
    TLS-inspecting proxy or a private index, the stack's own CAs are not
    enough) and the host's proxy settings. Empty fields are left out."""

    ca_bundle: Path | None = None
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""


@dataclass(frozen=True)
class BuildConfig:
    registry: RegistrySettings
    stack_ref: str  # "127.0.0.1:5000/stacks/bookworm:20261130"
    cache_dir: Path  # pulled base layers, dependency layers, pip/npm download caches
    work_dir: Path  # per-build scratch (overlays, new layers); emptied after each build
    runc_root: Path
    network: BuildNetwork | None = None  # None: steps run without network
    limits: BuildLimits = field(default_factory=BuildLimits)
    pip_index_url: str | None = None  # None: pip's default (PyPI)
    npm_registry_url: str | None = None  # None: npm's default
    keep_images: int = 10  # per app; 0 keeps all
    # Images a release still references: pruning never deletes them. Asked
    # when pruning, not when the build starts: a rollback made while the
    # build ran may have made an old image the serving one.
    protected_digests: Callable[[], Collection[str]] = frozenset
    # Where the registry push lock lives (housekeeping.registry_push_lock):
    # one place for every build of the host, whatever cache dir a build uses.
    registry_lock_dir: Path | None = None

    @property
    def lock_dir(self) -> Path:
        return self.registry_lock_dir or self.cache_dir

    runc_binary: str = "runc"
    cgroup_parent: str = "paas-build"  # build steps' cgroups are /<parent>/<step id>
    build_args: dict[str, str] = field(default_factory=dict)  # Dockerfile ARG values
    trust: HostTrust = field(default_factory=HostTrust)
    # The pulled-image store (unpacked base layers); default <cache_dir>/images.
    # The runtime agent's store may be shared: it is content-addressed and locked.
    image_store_dir: Path | None = None
    # Repositories (``repo`` or ``repo:tag``) in the platform registry that
    # any team's Dockerfile may start FROM, besides the stack and its own apps.
    allowed_images: tuple[str, ...] = ()

    @property
    def images_dir(self) -> Path:
        return self.image_store_dir or self.cache_dir / "images"
