"""Making a layer from files without a container (COPY, the app source).

A destination is resolved against the layers below, symlinks included: on
Debian bookworm ``/bin`` is a link to ``usr/bin``, and a layer that made a
real ``/bin`` directory would hide every command in the image. Parent
directories the layer has to create take their mode and owner from the
layer below (a fresh ``/tmp`` with mode 0755 would break the image)."""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.plan import CopyStep

MAX_LINK_HOPS = 40


def lookup(lowers: Sequence[Path], rel: str) -> Path | None:
    """The topmost layer's entry for ``rel`` (no leading slash), or None when
    no layer has it or the topmost one whites it out."""
    for layer in lowers:
        path = layer / rel
        try:
            st = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlay whiteout
            return None
        return path
    return None


def resolve(lowers: Sequence[Path], dest: str, step: str) -> str:
    """``dest`` (absolute, in the image) with every symlink followed inside
    the image's root, as a relative path."""
    pending = [p for p in dest.split("/") if p]
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        rel = "/".join([*done, part])
        found = lookup(lowers, rel)
        if found is not None and found.is_symlink():
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise BuildFailed(f"too many symlinks resolving {dest}", step=step)
            target = os.readlink(found)
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        done.append(part)
    return "/".join(done)


def is_dir_in_image(lowers: Sequence[Path], rel: str) -> bool:
    found = lookup(lowers, rel)
    return found is not None and found.is_dir() and not found.is_symlink()


def make_parents(layer_dir: Path, lowers: Sequence[Path], rel: str) -> None:
    """Create ``rel``'s parents in the layer, copying mode and owner from the
    image where they exist."""
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        target = layer_dir / sub
        if target.exists():
            continue
        existing = lookup(lowers, sub)
        target.mkdir()
        if existing is not None and existing.is_dir():
            st = existing.stat()
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.lchown(target, st.st_uid, st.st_gid)
        else:
            os.chmod(target, 0o755)


def materialize_copy(step: CopyStep, layer_dir: Path, lowers: Sequence[Path]) -> None:
    """Write ``step``'s files into ``layer_dir`` (an empty directory)."""
    for item in step.items:
        rel = resolve(lowers, item.destination, step.name)
        if item.source.is_dir() and not item.source.is_symlink():
            target_rel = rel
            make_parents(layer_dir, lowers, f"{rel}/x")
            _copy_tree(item.source, layer_dir / rel, step)
            _chown_new_dir(layer_dir / rel, lowers, rel, step.chown)
            continue
        into_dir = item.destination.endswith("/") or is_dir_in_image(lowers, rel)
        target_rel = posixpath.join(rel, item.source.name) if into_dir else rel
        make_parents(layer_dir, lowers, target_rel)
        if into_dir:
            _chown_new_dir(layer_dir / rel, lowers, rel, step.chown)
        target = layer_dir / target_rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        shutil.copy2(item.source, target, follow_symlinks=False)
        os.lchown(target, *step.chown)
    for directory in step.dirs:
        rel = resolve(lowers, directory, step.name)
        make_parents(layer_dir, lowers, f"{rel}/x")
        _chown_new_dir(layer_dir / rel, lowers, rel, (0, 0))


def _chown_new_dir(path: Path, lowers: Sequence[Path], rel: str, owner: tuple[int, int]) -> None:
    # A directory the image did not have belongs to the COPY's owner; an
    # existing one keeps its own (made by make_parents above).
    if lookup(lowers, rel) is None and path.is_dir():
        os.lchown(path, *owner)


def _copy_tree(src: Path, dest: Path, step: CopyStep) -> None:
    dest.mkdir(exist_ok=True)

    def ignored(directory: str, names: list[str]) -> list[str]:
        if step.context is None or not step.ignore.rules:
            return []
        base = os.path.relpath(directory, step.context)
        return [n for n in names if step.ignore.ignored(os.path.normpath(os.path.join(base, n)))]

    skip = set(step.exclude) | set(ignored(str(src), os.listdir(src)))
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        if entry.name in skip:
            continue
        target = dest / entry.name
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, target, symlinks=True, dirs_exist_ok=True, ignore=ignored)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            shutil.copy2(entry.path, target, follow_symlinks=False)
        _chown_all(target, step.chown)


def _chown_all(path: Path, owner: tuple[int, int]) -> None:
    os.lchown(path, *owner)
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), *owner)
