"""The uploaded source tree: its digest (what "identical source" means) and
the names never copied into an image."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

# Never part of the image: VCS metadata, and environments built on the
# uploader's machine (they would shadow the ones the build makes).
IGNORED_TOP_LEVEL = (".git", ".hg", ".svn")


def source_digest(source_dir: Path) -> str:
    """sha256 over every path (sorted), its type, executable bit and content
    or link target. Timestamps and owners are left out on purpose: the same
    files uploaded twice must give the same digest."""
    h = hashlib.sha256()
    for rel, path in _walk(source_dir):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            h.update(b"L\0" + rel.encode() + b"\0" + os.readlink(path).encode() + b"\0")
        elif stat.S_ISDIR(st.st_mode):
            h.update(b"D\0" + rel.encode() + b"\0")
        elif stat.S_ISREG(st.st_mode):
            exe = b"x" if st.st_mode & 0o111 else b"-"
            h.update(b"F\0" + rel.encode() + b"\0" + exe + _file_hash(path) + b"\0")
    return "sha256:" + h.hexdigest()


def _walk(root: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in IGNORED_TOP_LEVEL]
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            out.append((rel, Path(dirpath) / name))
    out.sort()
    return out


def _file_hash(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def hash_parts(*parts: str | bytes) -> str:
    """A cache key from several inputs (length-prefixed so no two different
    lists of parts can collide by concatenation)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()
