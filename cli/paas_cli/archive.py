"""The current directory as a .tar.gz for `paas deploy`, leaving out what
.gitignore and .paasignore say, and .git itself.

Links are stored as links (the platform's intake decides what it accepts);
sockets and device files are skipped; owners are not sent.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paas_cli import ignore
from paas_cli.errors import CliError

ALWAYS_LEFT_OUT = {".git", ".hg", ".svn"}


@dataclass(frozen=True)
class Packed:
    path: Path
    files: int
    bytes: int


def pack(source: Path, dest: Path) -> Packed:
    if not source.is_dir():
        raise CliError(f"{source} is not a directory.")
    rules = _rules(source / ".paasignore", "")
    files, size = 0, 0
    with tarfile.open(dest, "w:gz") as tar:
        for rel, full in _walk(source, rules):
            info = tar.gettarinfo(str(full), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with full.open("rb") as fh:
                    tar.addfile(info, fh)
                files += 1
                size += info.size
            else:
                tar.addfile(info)
    if files == 0:
        raise CliError(f"Nothing to deploy in {source}: every file is ignored or it is empty.")
    return Packed(dest, files, size)


def _rules(path: Path, base: str) -> list[ignore.Rule]:
    try:
        return ignore.parse(path.read_text(errors="replace"), base)
    except FileNotFoundError:
        return []


def _walk(top: Path, rules: list[ignore.Rule]) -> Iterator[tuple[str, Path]]:
    """(relative path, full path) of everything to send, parents first."""
    stack: list[tuple[str, Path, list[ignore.Rule]]] = [("", top, rules)]
    while stack:
        rel_dir, directory, active = stack.pop()
        active = active + _rules(directory / ".gitignore", rel_dir)
        with os.scandir(directory) as entries:
            names = sorted(entries, key=lambda e: e.name)
        subdirs = []
        for entry in names:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            mode = entry.stat(follow_symlinks=False).st_mode
            is_dir = stat.S_ISDIR(mode)
            if entry.name in ALWAYS_LEFT_OUT and is_dir:
                continue
            if ignore.ignored(active, rel, is_dir):
                continue
            if not (is_dir or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                continue  # sockets, fifos, devices: nothing a build can use
            yield rel, Path(entry.path)
            if is_dir:
                subdirs.append((rel, Path(entry.path), active))
        stack.extend(reversed(subdirs))
