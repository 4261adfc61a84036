"""Path checks shared by every unpacker of untrusted archives (image layers,
uploaded source): an entry may only land inside its destination."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from runtime_agent.host.errors import UnsafeArchive


def clean_member_name(name: str) -> str:
    """Normalise an archive member name to a relative POSIX path.

    Refuses absolute names and names that climb out with ``..``: both would
    write outside the destination.
    """
    if "\x00" in name:
        raise UnsafeArchive(f"entry {name!r} has a NUL byte in its name", entry=name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"entry {name!r} has an absolute path", entry=name)
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise UnsafeArchive(f"entry {name!r} points outside the destination", entry=name)
    return "" if norm == "." else norm


def link_target_inside(dest: Path, member: str, target: str) -> bool:
    """True when a symlink at ``member`` pointing to ``target`` stays in ``dest``.

    Absolute targets are refused: an uploaded source tree has no root of its
    own, so ``/etc/passwd`` could only mean the host's.
    """
    if target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    return not (joined == ".." or joined.startswith("../"))


def resolve_inside(dest: Path, rel: str) -> Path:
    """Join ``rel`` to ``dest`` and refuse it if any existing symlink on the way
    leads outside ``dest`` (an earlier entry may have planted one)."""
    root = os.path.realpath(dest)
    parent = os.path.realpath(os.path.join(root, posixpath.dirname(rel)))
    if parent != root and not parent.startswith(root + os.sep):
        raise UnsafeArchive(f"entry {rel!r} would be written through a link outside", entry=rel)
    return Path(parent) / posixpath.basename(rel)
