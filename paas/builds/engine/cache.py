"""The layer cache: layers a build made by running something (dependency
installs, Dockerfile RUNs), keyed by everything that decides their content.
A hit reuses the packed blob and the unpacked tree (as an overlay lower for
the steps above it) and the command does not run.

Layout: ``<cache_dir>/layers/<key>/{layer.tar.gz, layer.json, tree/}``,
written in a temporary directory and renamed in place, so a reader never
sees half an entry and two workers making the same key do not collide."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from runtime_agent.host import safepath
from runtime_agent.images.layers import LayerInfo

KEY_CHARS = set("0123456789abcdef")


@dataclass(frozen=True)
class CachedLayer:
    key: str
    info: LayerInfo
    blob: Path
    tree: Path
    created_by: str


class LayerCache:
    def __init__(self, root: Path) -> None:
        self.root = root / "layers"

    def _dir(self, key: str) -> Path:
        if not key or set(key) - KEY_CHARS:
            raise ValueError(f"bad cache key {key!r}")
        return self.root / key

    def get(self, key: str) -> CachedLayer | None:
        entry = self._dir(key)
        try:
            meta = json.loads((entry / "layer.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        blob, tree = entry / "layer.tar.gz", entry / "tree"
        if not blob.is_file() or not tree.is_dir():
            return None
        os.utime(entry)  # last use, for eviction by age
        return CachedLayer(key, LayerInfo(**meta["info"]), blob, tree, meta["created_by"])

    def put(
        self, key: str, tree: Path, blob: Path, info: LayerInfo, created_by: str
    ) -> CachedLayer:
        """Move ``tree`` and ``blob`` into the cache (same filesystem: a
        rename; otherwise copied)."""
        final = self._dir(key)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _move_tree(tree, tmp / "tree")
            shutil.move(str(blob), tmp / "layer.tar.gz")  # our own file: no links
            meta = {"info": info.__dict__, "created_by": created_by, "created_at": time.time()}
            (tmp / "layer.json").write_text(json.dumps(meta))
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.exists():
                    raise
                # Another build stored the same key first: theirs is as good.
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        cached = self.get(key)
        assert cached is not None
        return cached

    def evict_older_than(self, seconds: float) -> list[str]:
        """Drop entries not used for ``seconds`` (called by a periodic task)."""
        if not self.root.is_dir():
            return []
        cutoff = time.time() - seconds
        removed = []
        for entry in self.root.iterdir():
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed


def _move_tree(tree: Path, dest: Path) -> None:
    """Move a layer tree (a build step's output: the tenant's) to ``dest``:
    a rename on one filesystem, else a copy that keeps links as links and
    never follows one (safepath), then the original removed the same way."""
    try:
        os.rename(tree, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    dest.mkdir(mode=0o755)
    with safepath.opened_dir(tree) as src_fd, safepath.opened_dir(dest) as dst_fd:
        safepath.copy_tree(src_fd, dst_fd)
    safepath.remove_tree(tree)
