"""The build engine: source directory in, OCI image in a registry out.

Django-free (the Celery task calls it). Public interface::

    build_image(*, source_dir, app, build_id, version, config, log, secrets, tenant)
        -> BuildResult            raises BuildFailed(step, command, exit_code)
    BuildConfig / RegistrySettings / BuildLimits / BuildNetwork   (settings)
    publish_stack(StackSpec(...), cache_dir, client, log) -> "host/stacks/name:date"
    reap_stale_builds(config)     (leftovers of builds whose worker died)
"""

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
