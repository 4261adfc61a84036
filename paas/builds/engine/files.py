"""Making a layer from files without a container (COPY, the app source).

A destination is resolved against the layers below, symlinks included: on
Debian bookworm ``/bin`` is a link to ``usr/bin``, and a layer that made a
real ``/bin`` directory would hide every command in the image. That
resolution is done on names (readlink in the layers, never a path walk), the
way the container will see the image. Parent directories the layer has to
create take their mode and owner from the layer below (a fresh ``/tmp``
with mode 0755 would break the image).

Every tree here is a tenant's: the source (with the links its archive
held), the layers below (a base image, earlier RUN steps) and the layer
being made (an earlier source of the same COPY may have planted links in
it). So all of it goes through :mod:`runtime_agent.host.safepath`: directory
fds, no-follow, links copied as links and replaced, never written through.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.plan import CopyItem, CopyStep
from runtime_agent.host import safepath
from runtime_agent.host.errors import UnsafePath

MAX_LINK_HOPS = 40


@dataclass(frozen=True)
class Found:
    """An entry of one layer, as that layer holds it (a link is not followed)."""

    layer: Path
    rel: str
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.st.st_mode)

    def readlink(self) -> str:
        with safepath.opened_dir(self.layer) as fd:
            return safepath.readlink(fd, self.rel)


def lookup(lowers: Sequence[Path], rel: str) -> Found | None:
    """The topmost layer's entry for ``rel`` (no leading slash), or None when
    no layer has it or the topmost one hides it: a whiteout, or a file or
    link where one of ``rel``'s parents would be (overlay merges only real
    directories)."""
    for layer in lowers:
        with safepath.opened_dir(layer) as fd:
            try:
                st = safepath.lstat(fd, rel)
            except (UnsafePath, NotADirectoryError):
                return None
        if st is None:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlay whiteout
            return None
        return Found(layer, rel, st)
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
        if found is not None and found.is_symlink:
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise BuildFailed(f"too many symlinks resolving {dest}", step=step)
            target = found.readlink()
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        done.append(part)
    return "/".join(done)


def is_dir_in_image(lowers: Sequence[Path], rel: str) -> bool:
    found = lookup(lowers, rel)
    return found is not None and found.is_dir


def make_parents(layer_fd: int, lowers: Sequence[Path], rel: str) -> int:
    """Create ``rel``'s parents in the layer, copying mode and owner from the
    image where they exist; returns an fd of the parent (the caller closes
    it). A link or file on the way raises :class:`UnsafePath`."""

    def adopt(fd: int, sub: str) -> None:
        existing = lookup(lowers, sub)
        if existing is not None and existing.is_dir:
            os.fchown(fd, existing.st.st_uid, existing.st.st_gid)
            os.fchmod(fd, stat.S_IMODE(existing.st.st_mode))
        else:
            os.fchmod(fd, 0o755)

    return safepath.make_dirs(layer_fd, posixpath.dirname(rel), on_create=adopt)


def materialize_copy(step: CopyStep, layer_dir: Path, lowers: Sequence[Path]) -> None:
    """Write ``step``'s files into ``layer_dir`` (an empty directory)."""
    try:
        with safepath.opened_dir(layer_dir) as layer_fd:
            for item in step.items:
                _copy_item(step, item, layer_fd, lowers)
            for directory in step.dirs:
                rel = resolve(lowers, directory, step.name)
                with safepath.closing(make_parents(layer_fd, lowers, f"{rel}/x")) as fd:
                    _chown_new_dir(fd, lowers, rel, (0, 0))
    except (UnsafePath, NotADirectoryError) as exc:
        # Only a tree shaped to escape gets here (a link where this step
        # must write a directory): refuse rather than guess.
        raise BuildFailed(
            f"{step.name}: the destination goes through a link or a file ({exc}); "
            "nothing was written through it",
            step=step.name,
        ) from exc


def _copy_item(step: CopyStep, item: CopyItem, layer_fd: int, lowers: Sequence[Path]) -> None:
    rel = resolve(lowers, item.destination, step.name)
    with _source(step, item) as (src_fd, name, src_rel):
        if name is None:  # the source is the context (or source) directory itself
            _copy_dir_item(step, src_fd, src_rel, layer_fd, lowers, rel)
        elif _is_dir(src_fd, name):
            with safepath.closing(safepath.open_dir_beneath(src_fd, name)) as tree_fd:
                _copy_dir_item(step, tree_fd, src_rel, layer_fd, lowers, rel)
        else:
            _copy_file_item(step, item, src_fd, name, layer_fd, lowers, rel)


def _copy_dir_item(
    step: CopyStep, tree_fd: int, src_rel: str, layer_fd: int, lowers: Sequence[Path], rel: str
) -> None:
    """A directory source: its contents go into ``rel``."""
    with safepath.closing(make_parents(layer_fd, lowers, f"{rel}/x")) as dest_fd:
        _chown_new_dir(dest_fd, lowers, rel, step.chown)
        safepath.copy_tree(tree_fd, dest_fd, owner=step.chown, skip=_skipper(step, src_rel))


def _copy_file_item(
    step: CopyStep,
    item: CopyItem,
    src_fd: int,
    name: str,
    layer_fd: int,
    lowers: Sequence[Path],
    rel: str,
) -> None:
    """A file (or link) source: to ``rel``, or into it when it is a directory."""
    into_dir = item.destination.endswith("/") or is_dir_in_image(lowers, rel)
    target_rel = posixpath.join(rel, name) if into_dir else rel
    if not target_rel:
        raise BuildFailed(f"{step.name}: cannot copy a file over /", step=step.name)
    with safepath.closing(make_parents(layer_fd, lowers, target_rel)) as parent_fd:
        if into_dir:
            _chown_new_dir(parent_fd, lowers, rel, step.chown)
        safepath.copy_entry(
            src_fd, name, parent_fd, posixpath.basename(target_rel), owner=step.chown
        )


@contextlib.contextmanager
def _source(step: CopyStep, item: CopyItem) -> Iterator[tuple[int, str | None, str]]:
    """(a directory fd, the source's name in it or None when the source is
    that directory, the source's path in the build context). Links on the
    way are followed as the context's own root would (they were checked to
    stay inside it); the source itself, if a link, is copied as one."""
    if step.context is None:  # a buildpack's source: the directory itself
        root, rel = item.source.parent, item.source.name
    else:
        root = Path(os.path.realpath(step.context))
        rel = os.path.relpath(item.source, root)
    if rel == ".." or rel.startswith("../"):
        raise BuildFailed(f"{step.name}: {item.source} is outside the context", step=step.name)
    with safepath.opened_dir(root) as root_fd:
        if rel == ".":
            yield root_fd, None, ""
            return
        parent, name = safepath.open_parent(root_fd, rel, resolve=safepath.IN_ROOT)
        with safepath.closing(parent):
            yield parent, name, rel if step.context is not None else ""


def _is_dir(dir_fd: int, name: str) -> bool:
    return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)


def _skipper(step: CopyStep, src_rel: str) -> Callable[[str], bool]:
    """What a directory copy leaves out: the step's top-level excludes and
    whatever .dockerignore names (relative to the build context)."""

    def skip(rel: str) -> bool:
        if "/" not in rel and rel in step.exclude:
            return True
        if step.context is None or not step.ignore.rules:
            return False
        return step.ignore.ignored(posixpath.normpath(posixpath.join(src_rel or ".", rel)))

    return skip


def _chown_new_dir(fd: int, lowers: Sequence[Path], rel: str, owner: tuple[int, int]) -> None:
    # A directory the image did not have belongs to the COPY's owner; an
    # existing one keeps its own (made by make_parents above).
    if lookup(lowers, rel) is None:
        os.fchown(fd, *owner)
