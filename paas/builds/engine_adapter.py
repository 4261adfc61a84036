"""The bridge between Django settings and the Django-free build engine."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path

from django.conf import settings

from paas.accounts.idranges import team_id_range
from paas.applications.models import App
from paas.builds.engine import (
    BuildConfig,
    BuildLimits,
    BuildNetwork,
    BuildResult,
    HostTrust,
    RegistrySettings,
    StackSpec,
    Tenant,
    build_image,
    publish_stack,
)
from paas.builds.engine.housekeeping import registry_push_lock
from paas.builds.registry_access import platform_token, registry_signer
from runtime_agent.host.private import private_dir


def registry_settings() -> RegistrySettings:
    return RegistrySettings(
        host=settings.PAAS_REGISTRY,
        username=settings.PAAS_REGISTRY_USER or None,
        password=settings.PAAS_REGISTRY_PASSWORD or None,
        scheme=settings.PAAS_REGISTRY_SCHEME,
        ca_file=settings.PAAS_REGISTRY_CA or None,
        token_source=platform_token if registry_signer() else None,
    )


def stack_spec() -> StackSpec:
    return StackSpec(
        name=settings.PAAS_STACK_NAME,
        mirror=settings.PAAS_STACK_MIRROR,
        packages=tuple(settings.PAAS_STACK_PACKAGES),
    )


def _allowed_networks() -> tuple[IPv4Network, ...]:
    # Checked when the settings load; here only turned into networks.
    return tuple(IPv4Network(n) for n in settings.PAAS_BUILD_ALLOWED_NETWORKS)


def engine_config(stack_ref: str = "") -> BuildConfig:
    # The cache (stack, dependency layers, downloads) may be shared by many
    # workers; runc state and the build network are this host's own.
    build_dir = private_dir(Path(settings.BUILD_DIR))
    return BuildConfig(
        registry=registry_settings(),
        stack_ref=stack_ref,
        cache_dir=private_dir(Path(settings.PAAS_BUILD_CACHE_DIR)),
        work_dir=build_dir / "work",
        runc_root=build_dir / "runc",
        network=BuildNetwork(
            state_dir=build_dir / "net",
            bridge=settings.PAAS_BUILD_BRIDGE,
            subnet=IPv4Network(settings.PAAS_BUILD_SUBNET),
            nft_table=settings.PAAS_BUILD_NFT_TABLE,
            allowed=_allowed_networks(),
        ),
        limits=BuildLimits(
            memory_bytes=settings.PAAS_BUILD_MEMORY_BYTES,
            cpus=settings.PAAS_BUILD_CPUS,
            pids=settings.PAAS_BUILD_PIDS,
            wall_time_s=settings.PAAS_BUILD_STEP_TIMEOUT,
        ),
        pip_index_url=settings.PAAS_PIP_INDEX_URL or None,
        npm_registry_url=settings.PAAS_NPM_REGISTRY_URL or None,
        keep_images=settings.PAAS_KEEP_IMAGES,
        allowed_images=tuple(settings.PAAS_BUILD_ALLOWED_IMAGES),
        registry_lock_dir=Path(settings.PAAS_BUILD_CACHE_DIR),
        trust=HostTrust(
            ca_bundle=Path(bundle) if (bundle := settings.PAAS_BUILD_CA_BUNDLE) else None,
            http_proxy=settings.PAAS_BUILD_HTTP_PROXY,
            https_proxy=settings.PAAS_BUILD_HTTPS_PROXY,
            no_proxy=settings.PAAS_BUILD_NO_PROXY,
        ),
    )


# Per worker process (shared by its pool's threads): (registry, stack key) ->
# the pushed stack's reference.
_stacks: dict[tuple[str, str], str] = {}


def ensure_stack(log: Callable[[str], None]) -> str:
    """The stack's reference, made and pushed the first time (about a
    minute), reused after. A file lock keeps two workers from running
    debootstrap side by side."""
    spec = stack_spec()
    key = (settings.PAAS_REGISTRY, spec.key())
    if key in _stacks:
        return _stacks[key]
    cache = private_dir(Path(settings.PAAS_BUILD_CACHE_DIR))
    with open(cache / ".stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Another thread of this worker (two builds at once on the threads
        # pool) may have pushed it while this one waited: pushing its tag
        # again while that build reads it made the registry answer 500.
        if key in _stacks:
            return _stacks[key]
        # A push like any other: no registry garbage collection meanwhile.
        with registry_settings().client() as client, registry_push_lock(cache):
            _stacks[key] = publish_stack(spec, cache, client, log)
    return _stacks[key]


def build_tenant(app: App) -> Tenant:
    """The team an app's builds run for: its caches, and the apps whose
    images its Dockerfile may start FROM."""
    names = App.objects.filter(team_id=app.team_id).values_list("name", flat=True)
    return Tenant(
        team=f"team-{app.team_id}", apps=frozenset(names), id_range=team_id_range(team=app.team)
    )


def build_app_image(
    *,
    app: str,
    build_id: str,
    version: int,
    source: Path,
    log: Callable[[str], None],
    tenant: Tenant,
    build_args: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    protected_digests: Callable[[], Collection[str]] = frozenset,
) -> BuildResult:
    config = replace(
        engine_config(),
        stack_ref=ensure_stack(log),
        build_args=dict(build_args or {}),
        protected_digests=protected_digests,
    )
    return build_image(
        source_dir=source,
        app=app,
        build_id=build_id,
        version=version,
        config=config,
        log=log,
        secrets=dict(secrets or {}),
        cancel=cancel,
        tenant=tenant,
    )
