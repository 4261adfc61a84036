"""The build engine: source directory in, OCI image in a registry out.

Django-free (the Celery task calls it). Public interface::

    build_image(*, source_dir, app, build_id, version, config, log, secrets, tenant)
        -> BuildResult            raises BuildFailed(step, command, exit_code)
    BuildConfig / RegistrySettings / BuildLimits / BuildNetwork   (settings)
    publish_stack(StackSpec(...), cache_dir, client, log) -> "host/stacks/name:date"
    reap_stale_builds(config)     (leftovers of builds whose worker died)

Its names are imported on first use (PEP 562): the web imports a few light
modules of the engine (``outbound``'s name rules, ``errors``) and must not
pay for the rest (pyroute2, the registry client: ~25 MiB per process).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paas.builds.engine.build import BuildResult, StepRecord, build_image
    from paas.builds.engine.config import (
        BuildConfig,
        BuildLimits,
        BuildNetwork,
        HostTrust,
        RegistrySettings,
    )
    from paas.builds.engine.errors import BuildCancelled, BuildFailed
    from paas.builds.engine.reaper import reap_stale_builds
    from paas.builds.engine.stack import StackSpec, publish_stack
    from paas.builds.engine.tenant import Tenant

_MODULE_OF = {
    "BuildResult": "build",
    "StepRecord": "build",
    "build_image": "build",
    "BuildConfig": "config",
    "BuildLimits": "config",
    "BuildNetwork": "config",
    "HostTrust": "config",
    "RegistrySettings": "config",
    "BuildCancelled": "errors",
    "BuildFailed": "errors",
    "reap_stale_builds": "reaper",
    "StackSpec": "stack",
    "publish_stack": "stack",
    "Tenant": "tenant",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BuildCancelled",
    "BuildConfig",
    "BuildFailed",
    "BuildLimits",
    "BuildNetwork",
    "BuildResult",
    "HostTrust",
    "RegistrySettings",
    "StackSpec",
    "StepRecord",
    "Tenant",
    "build_image",
    "publish_stack",
    "reap_stale_builds",
]
