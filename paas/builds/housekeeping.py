"""The disk never fills: the periodic housekeeping of the builder (a beat
task, ``manage.py build_housekeeping`` by hand) and the usage report
(``manage.py build_disk_usage``).

Each pass: evict the build cache down to PAAS_BUILD_CACHE_MAX_BYTES (least
recently used dependency layers and download files first, never one a
running build may use), drop half-made cache entries of dead workers,
remove the scratch directories of finished builds, and, when pruning
deleted image versions since the last pass, run the registry's garbage
collection with every push of the platform held off (see
paas/builds/engine/housekeeping.py)."""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from paas.accounts.models import Team
from paas.builds.engine.housekeeping import (
    EvictionReport,
    cache_entries,
    clear_gc_needed,
    evict_cache,
    gc_needed,
    registry_push_lock,
    remove_stale_temporaries,
    tree_size,
)
from paas.builds.models import FINAL_STATES, Build
from paas.builds.registry_server import (
    GarbageCollection,
    registry_garbage_collect,
    registry_storage_dir,
    uploads_in_flight,
)

log = logging.getLogger(__name__)
# An open upload that has not moved for this long is a push that died.
UPLOAD_IDLE_S = 600.0


@dataclass
class HousekeepingReport:
    eviction: EvictionReport
    build_dirs_removed: list[str] = field(default_factory=list)
    temporaries_removed: int = 0
    uploads_removed: int = 0
    registry_gc: GarbageCollection | None = None
    registry_gc_skipped: str = ""

    def summary(self) -> str:
        e = self.eviction
        parts = [
            f"cache {e.before_bytes} -> {e.after_bytes} bytes (budget {e.budget_bytes}, "
            f"{len(e.removed)} entries evicted"
            + (f", {e.in_use_bytes} bytes in use kept" if e.in_use_bytes else "")
            + ")",
            f"{len(self.build_dirs_removed)} build directories removed",
            f"{self.uploads_removed} old uploads removed",
        ]
        if self.registry_gc:
            parts.append(f"registry GC deleted {self.registry_gc.blobs_deleted} blobs")
        elif self.registry_gc_skipped:
            parts.append(f"registry GC skipped: {self.registry_gc_skipped}")
        return "; ".join(parts)


def _in_use_grace_s() -> float:
    # No build runs longer than its task's hard time limit.
    return float(settings.CELERY_TASK_TIME_LIMIT + 60)


def build_dirs_remove_finished(*, grace: timedelta | None = None) -> list[str]:
    """Remove PAAS_BUILD_DIR/<build id>/ of builds that ended (or no longer
    exist) more than ``grace`` ago; a running build's directory stays."""
    root = Path(settings.BUILD_DIR)
    if not root.is_dir():
        return []
    ids: dict[str, Path] = {}
    for entry in root.iterdir():
        try:
            ids[str(uuid.UUID(entry.name))] = entry
        except ValueError:
            continue  # work/, runc/, net/: the engine's own
    cutoff = timezone.now() - (grace or timedelta(seconds=settings.PAAS_BUILD_LEASE_SECONDS * 2))
    live = {
        str(pk)
        for pk in Build.objects.filter(pk__in=list(ids))
        .exclude(state__in=FINAL_STATES, finished_at__lt=cutoff)
        .values_list("pk", flat=True)
    }
    removed = []
    for build_id, path in ids.items():
        if build_id in live:
            continue
        shutil.rmtree(path, ignore_errors=True)  # fd-based: no link is followed
        removed.append(build_id)
    return removed


def build_uploads_remove_old(*, older_than: timedelta) -> int:
    """Delete the uploaded archives of builds that ended more than
    ``older_than`` ago (their images are in the registry; nothing builds
    from an old upload again). Returns how many were deleted."""
    upload_dir = Path(settings.UPLOAD_DIR).resolve()
    old = Build.objects.filter(
        state__in=FINAL_STATES, finished_at__lt=timezone.now() - older_than
    ).exclude(archive_path="")
    count = 0
    for build_id, archive in old.values_list("pk", "archive_path"):
        path = Path(archive)
        # Only files of the upload directory, named by the platform.
        if path.parent.resolve() == upload_dir and not path.is_symlink():
            path.unlink(missing_ok=True)
            count += 1
        Build.objects.filter(pk=build_id).update(archive_path="")
    return count


def registry_collect_garbage(*, force: bool = False) -> GarbageCollection | str:
    """Run the registry's garbage collection if versions were deleted since
    the last one (or ``force``); a string says why it did not run."""
    cache = Path(settings.PAAS_BUILD_CACHE_DIR)
    config = settings.PAAS_REGISTRY_CONFIG
    if not config or not Path(config).is_file():
        return "PAAS_REGISTRY_CONFIG does not name the registry's config on this host"
    if not force and not gc_needed(cache):
        return "no image was deleted since the last collection"
    with registry_push_lock(cache, exclusive=True):
        # The lock holds off the platform's pushes; an upload open in the
        # registry is a push from elsewhere: never collect under it.
        storage = registry_storage_dir(Path(config))
        busy = uploads_in_flight(storage, within_s=UPLOAD_IDLE_S) if storage else []
        if busy:
            return f"{len(busy)} blob uploads are in flight in the registry; next time"
        clear_gc_needed(cache)
        result = registry_garbage_collect(Path(config), binary=settings.PAAS_REGISTRY_BINARY)
    log.info("registry garbage collection: %d blobs deleted", result.blobs_deleted)
    return result


def builds_housekeep(*, force_gc: bool = False) -> HousekeepingReport:
    cache = Path(settings.PAAS_BUILD_CACHE_DIR)
    grace = _in_use_grace_s()
    report = HousekeepingReport(
        eviction=evict_cache(
            cache, budget_bytes=settings.PAAS_BUILD_CACHE_MAX_BYTES, min_age_s=grace
        )
    )
    report.temporaries_removed = len(remove_stale_temporaries(cache, min_age_s=grace))
    report.build_dirs_removed = build_dirs_remove_finished()
    if settings.PAAS_UPLOAD_RETENTION_DAYS:
        report.uploads_removed = build_uploads_remove_old(
            older_than=timedelta(days=settings.PAAS_UPLOAD_RETENTION_DAYS)
        )
    gc = registry_collect_garbage(force=force_gc)
    if isinstance(gc, GarbageCollection):
        report.registry_gc = gc
    else:
        report.registry_gc_skipped = gc
    log.info("build housekeeping: %s", report.summary())
    return report


def disk_usage() -> list[tuple[str, Path, int]]:
    """(what, where, bytes) for everything the builder keeps on disk."""
    cache = Path(settings.PAAS_BUILD_CACHE_DIR)
    rows: list[tuple[str, Path]] = [
        ("stacks (base root filesystems and layers)", cache / "stacks"),
        ("pulled base images (unpacked)", cache / "images"),
        ("dependency layers (evictable)", cache / "layers"),
        ("pip downloads (evictable)", cache / "downloads" / "pip"),
        ("npm downloads (evictable)", cache / "downloads" / "npm"),
        ("per-team dependency layers and downloads (evictable)", cache / "teams"),
        ("build scratch directories", Path(settings.BUILD_DIR)),
        ("uploaded source archives", Path(settings.UPLOAD_DIR)),
    ]
    config = settings.PAAS_REGISTRY_CONFIG
    storage = registry_storage_dir(Path(config)) if config else None
    if storage is not None:
        rows.append(("registry storage", storage))
    return [(what, path, tree_size(path) if path.exists() else 0) for what, path in rows]


def cache_usage_by_team() -> list[tuple[str, int]]:
    """Evictable cache bytes per team, largest first, as (label, bytes): the
    team's name and directory (``teams/team-<id>``), or "(shared)" for
    entries outside every team's directory."""
    cache = Path(settings.PAAS_BUILD_CACHE_DIR)
    totals: dict[str, int] = {}
    for entry in cache_entries(cache):
        parts = entry.path.relative_to(cache).parts
        owner = parts[1] if parts[0] == "teams" and len(parts) > 2 else ""
        totals[owner] = totals.get(owner, 0) + entry.size
    ids = [int(m.group(1)) for o in totals if (m := re.fullmatch(r"team-(\d+)", o))]
    names = dict(Team.objects.filter(pk__in=ids).values_list("pk", "name"))

    def label(owner: str) -> str:
        if not owner:
            return "(shared)"
        m = re.fullmatch(r"team-(\d+)", owner)
        name = names.get(int(m.group(1))) if m else None
        return f"{name} (teams/{owner})" if name else f"teams/{owner} (no such team)"

    return sorted(((label(o), n) for o, n in totals.items()), key=lambda t: -t[1])
