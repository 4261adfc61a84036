"""The layer cache: layers a build made by running something (dependency
installs, Dockerfile RUNs), keyed by everything that decides their content.
A hit reuses the packed blob and the unpacked tree (as an overlay lower for
the steps above it) and the command does not run.

Layout: ``<cache_dir>/layers/<key>/{layer.tar.gz, layer.json, tree/}``,
written in a temporary directory and renamed in place, so a reader never
sees half an entry and two workers making the same key do not collide.
``cache_dir`` is a team's own (``<PAAS_BUILD_CACHE_DIR>/teams/<team>``, see
tenant.py): no team ever reads a layer another team's build made.

Keys hash everything that decides a layer's content; :func:`local_tree_digest`
is how a key covers files of the source the install reads (a local-path
requirement), without following a link out of the source."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime_agent.host import safepath
from runtime_agent.host.errors import UnsafePath
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


def local_tree_digest(root: Path, rel: str) -> bytes:
    """A digest of the file or directory ``rel`` in ``root`` (the source),
    for a cache key: names, types, executable bits, contents and link
    targets. Links on the way are resolved as ``root``'s own (as the build
    container sees the source); links inside are hashed, never followed.
    Something missing hashes as such (the install will then fail)."""
    h = hashlib.sha256()
    with safepath.opened_dir(root) as root_fd:
        try:
            parent, name = safepath.open_parent(root_fd, rel, resolve=safepath.IN_ROOT)
        except (OSError, UnsafePath):
            return b"missing:" + rel.encode()
        with safepath.closing(parent):
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return b"missing:" + rel.encode()
            _hash_entry(parent, name, st, "", h)
    return h.digest()


def _hash_entry(dir_fd: int, name: str, st: os.stat_result, rel: str, h: Any) -> None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        h.update(b"L\0" + rel.encode() + b"\0" + os.fsencode(os.readlink(name, dir_fd=dir_fd)))
    elif stat.S_ISREG(mode):
        h.update(b"F\0" + rel.encode() + (b"x" if mode & 0o111 else b"-"))
        with os.fdopen(safepath.openat2(dir_fd, name, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    elif stat.S_ISDIR(mode):
        h.update(b"D\0" + rel.encode() + b"\0")
        with safepath.closing(safepath.open_dir_beneath(dir_fd, name)) as sub:
            for child, child_st in safepath.list_dir(sub):
                _hash_entry(sub, child, child_st, f"{rel}/{child}", h)
