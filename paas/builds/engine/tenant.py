"""Who a build is for, and what that allows.

A build runs a team's code, so everything it may read is scoped to the team:

- ``FROM``: the stack, an image of one of the team's own apps, or an image
  an admin allowed for everyone (``BuildConfig.allowed_images``). Any other
  name in the registry (another team's app, with its code and whatever it
  baked in) fails the build before anything is pulled: the worker pulls
  with the platform's own registry credential, which reads every repository.
- Caches: dependency layers and pip/npm download caches live under a
  directory of the team's own (``<cache_dir>/teams/<team>/``). A cache a
  build step can write (the download caches are mounted read-write) is
  poisonable by that team: no other team's build ever mounts or reads it.
- Host ids: every build step runs in a user namespace whose root is the
  first id of the team's range (``id_range``, the same range the team's
  app containers get: paas/accounts/idranges.py), so a step's processes
  and the files they write are never host root's and never another team's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from paas.builds.engine.config import BuildConfig
from runtime_agent.host.errors import InvalidRequest
from runtime_agent.images.refs import ImageRef
from runtime_agent.wire import ID_RANGE_BASE, IdRange

_TEAM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Tenant:
    team: str  # the team's id: a directory name under the cache
    apps: frozenset[str] = field(default_factory=frozenset)  # the team's app names
    # Range 0 (no team has it): builds for no team, like the agent's default.
    id_range: IdRange = IdRange(host_id=ID_RANGE_BASE)

    def __post_init__(self) -> None:
        if not _TEAM_RE.fullmatch(self.team):
            raise ValueError(f"team key {self.team!r}: letters, digits, '-' and '_' only")


# A build for no team (the engine's own tests and benchmarks): its own
# caches, and FROM only the stack or an allowed image.
ANONYMOUS = Tenant(team="anonymous")


def team_cache_dir(cache_dir: Path, tenant: Tenant) -> Path:
    return cache_dir / "teams" / tenant.team


def scoped_config(config: BuildConfig, tenant: Tenant) -> BuildConfig:
    """``config`` with the team's own cache directory. The pulled-image store
    stays shared: it is content-addressed and verified, and FROM decides
    what a build may pull into it."""
    return replace(
        config,
        cache_dir=team_cache_dir(config.cache_dir, tenant),
        image_store_dir=config.images_dir,
        registry_lock_dir=config.lock_dir,  # the push lock and GC marker stay host-wide
    )


def base_allowed(ref: str, *, tenant: Tenant, config: BuildConfig) -> bool:
    """May ``tenant``'s Dockerfile start FROM ``ref`` (a full reference)?"""
    if ref == config.stack_ref:
        return True
    try:
        parsed = ImageRef.parse(ref)
    except InvalidRequest:
        return False
    if parsed.registry != config.registry.host:
        return False
    if parsed.repository in tenant.apps:
        return True
    if parsed.repository == _repository(config.stack_ref):
        return True  # the stack by its full name (any date): the platform's own

    return any(_matches(entry, parsed) for entry in config.allowed_images)


def _repository(ref: str) -> str | None:
    try:
        return ImageRef.parse(ref).repository
    except InvalidRequest:
        return None


def _matches(entry: str, ref: ImageRef) -> bool:
    """An allowed-images entry: ``repository`` (any tag or digest of it) or
    ``repository:tag`` (that tag only)."""
    repository, _, tag = entry.partition(":")
    if repository != ref.repository:
        return False
    return not tag or (ref.tag == tag and ref.digest is None)
