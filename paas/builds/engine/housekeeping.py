"""Keeping the builder's disk use bounded (a periodic task calls these).

The build cache holds dependency layers (``layers/<key>/``: a packed blob and
its unpacked tree, often hundreds of MB each) and the pip/npm download
caches (``downloads/``). :func:`evict_cache` removes the least recently used
of them until the total fits a budget. An entry a running build may be
using is never removed: a build touches a layer entry when it takes it from
the cache (``LayerCache.get``) or stores it, and no build runs longer than
the task time limit, so entries used more recently than ``min_age_s`` (that
limit) are left alone even over budget. Download-cache files may go at any
time: pip and npm fetch again what is missing, and a file open in a running
install stays readable after its unlink.

Registry garbage collection (deleting manifests frees no blob) must never
run while a push is in flight: every push of the platform holds a shared
lock (:func:`registry_push_lock`) and the collection holds it exclusively,
so pushes wait for the few seconds it takes and no push is ever half-seen.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime_agent.host import safepath
from runtime_agent.host.errors import UnsafePath

LAYERS = "layers"
DOWNLOADS = "downloads"
REGISTRY_LOCK = ".registry.lock"
GC_NEEDED = ".registry-gc-needed"


@dataclass(frozen=True)
class CacheEntry:
    kind: str  # "layer", "pip", "npm"...
    path: Path
    size: int
    last_used: float  # epoch seconds
    # A download-cache file: the tool's directory it lies beneath. Build
    # steps write there (a bind mount), so it is only ever touched by
    # directory fd, relative to this root, with no link followed.
    tenant_root: Path | None = None


@dataclass
class EvictionReport:
    budget_bytes: int
    before_bytes: int = 0
    after_bytes: int = 0
    removed: list[CacheEntry] = field(default_factory=list)
    in_use_bytes: int = 0  # over budget but too recently used to remove

    @property
    def freed_bytes(self) -> int:
        return sum(e.size for e in self.removed)


def tree_size(path: Path) -> int:
    """Bytes used by the files under ``path`` (no link is followed)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if not stat.S_ISDIR(st.st_mode):
                    total += st.st_blocks * 512
    return total


def cache_roots(cache_dir: Path) -> list[Path]:
    """The cache directory and each team's own under ``teams/`` (builds of
    different teams never share dependency layers or downloads)."""
    teams = cache_dir / "teams"
    roots = [cache_dir]
    if teams.is_dir() and not teams.is_symlink():
        roots += sorted(p for p in teams.iterdir() if p.is_dir() and not p.is_symlink())
    return roots


def cache_entries(cache_dir: Path) -> list[CacheEntry]:
    """Every evictable entry of every team: each dependency layer (as a
    whole) and each download-cache file."""
    return [entry for root in cache_roots(cache_dir) for entry in _entries(root)]


def _entries(cache_dir: Path) -> list[CacheEntry]:
    entries: list[CacheEntry] = []
    layers = cache_dir / LAYERS
    if layers.is_dir():
        for entry in layers.iterdir():
            with contextlib.suppress(OSError):
                st = entry.lstat()
                if stat.S_ISDIR(st.st_mode):
                    entries.append(CacheEntry("layer", entry, tree_size(entry), st.st_mtime))
    downloads = cache_dir / DOWNLOADS
    if downloads.is_dir() and not downloads.is_symlink():
        for tool in sorted(downloads.iterdir()):
            if tool.is_dir() and not tool.is_symlink():
                entries += _download_entries(tool)
    return entries


def _download_entries(tool: Path) -> list[CacheEntry]:
    """Each file of one tool's download cache. A tenant's build step may be
    writing it right now, swapping directories for links: ``os.fwalk``
    opens each directory by fd and never descends into a link, whenever it
    was swapped in."""
    entries: list[CacheEntry] = []
    for dirpath, _dirs, filenames, dir_fd in os.fwalk(tool, follow_symlinks=False):
        for name in filenames:
            with contextlib.suppress(OSError):
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                used = max(st.st_mtime, st.st_atime)
                path = Path(dirpath) / name
                entries.append(CacheEntry(tool.name, path, st.st_blocks * 512, used, tool))
    return entries


def evict_cache(
    cache_dir: Path, *, budget_bytes: int, min_age_s: float, now: float | None = None
) -> EvictionReport:
    """Remove least recently used entries until the cache fits
    ``budget_bytes``; never an entry used within ``min_age_s``."""
    now = time.time() if now is None else now
    report = evict_entries(
        cache_entries(cache_dir), budget_bytes=budget_bytes, min_age_s=min_age_s, now=now
    )
    for root in cache_roots(cache_dir):
        _prune_empty_dirs(root / DOWNLOADS)
    return report


def evict_entries(
    entries: list[CacheEntry], *, budget_bytes: int, min_age_s: float, now: float
) -> EvictionReport:
    """The removals of :func:`evict_cache`, for entries listed earlier (a
    download cache may have changed shape since: nothing is followed)."""
    entries = sorted(entries, key=lambda e: e.last_used)
    total = sum(e.size for e in entries)
    report = EvictionReport(budget_bytes=budget_bytes, before_bytes=total)
    for entry in entries:
        if total <= budget_bytes:
            break
        if now - entry.last_used < min_age_s:
            report.in_use_bytes += entry.size
            continue
        if entry.tenant_root is not None:
            _remove_beneath(entry.tenant_root, entry.path)
        else:
            _remove(entry.path)
        total -= entry.size
        report.removed.append(entry)
    report.after_bytes = total
    return report


def _remove_beneath(root: Path, path: Path) -> None:
    """Remove the download-cache file ``path`` relative to ``root``'s fd; a
    link on the way (a tenant's swap) leaves it where it is."""
    rel = str(path.relative_to(root))
    with (
        contextlib.suppress(FileNotFoundError, NotADirectoryError, UnsafePath),
        safepath.opened_dir(root) as root_fd,
    ):
        safepath.remove_beneath(root_fd, rel)


def _remove(path: Path) -> None:
    # rmtree works on directory fds here (no symlink is followed).
    if path.is_dir() and not path.is_symlink():
        # A layer entry: rename it away first, so a build looking it up sees
        # it gone rather than half-deleted.
        doomed = path.with_name(f".evicted-{path.name}")
        with contextlib.suppress(OSError):
            os.rename(path, doomed)
            path = doomed
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _prune_empty_dirs(root: Path) -> None:
    """Empty directories below each tool's (which stay), by directory fd:
    a directory a tenant swapped for a link is neither walked nor removed."""
    if not root.is_dir() or root.is_symlink():
        return
    for dirpath, dirs, _files, dir_fd in os.fwalk(root, topdown=False, follow_symlinks=False):
        if Path(dirpath) == root:
            continue  # its children are the tools' own directories
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=dir_fd)  # only an empty directory, never a link


def remove_stale_temporaries(cache_dir: Path, *, min_age_s: float) -> list[Path]:
    """Half-made layer entries (``.tmp-*``) and renamed-away evictions left
    by a worker that died."""
    removed: list[Path] = []
    cutoff = time.time() - min_age_s
    for root in cache_roots(cache_dir):
        layers = root / LAYERS
        if not layers.is_dir():
            continue
        for entry in layers.iterdir():
            if entry.name.startswith((".tmp-", ".evicted-")) and entry.lstat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


# --- the registry ------------------------------------------------------------------


@contextlib.contextmanager
def registry_push_lock(cache_dir: Path, *, exclusive: bool = False) -> Iterator[None]:
    """Held shared by every push (and manifest delete), exclusively by the
    garbage collection."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache_dir / REGISTRY_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def mark_gc_needed(cache_dir: Path) -> None:
    """Manifests were deleted: the next housekeeping collects their blobs."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / GC_NEEDED).touch()


def gc_needed(cache_dir: Path) -> bool:
    return (cache_dir / GC_NEEDED).exists()


def clear_gc_needed(cache_dir: Path) -> None:
    (cache_dir / GC_NEEDED).unlink(missing_ok=True)
