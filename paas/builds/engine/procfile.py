"""Procfile parsing: ``<name>: <command>`` per line, like Heroku and honcho.
The process types are recorded whatever the language of the app."""

from __future__ import annotations

import re
from pathlib import Path

from paas.builds.engine.errors import BuildFailed

_LINE_RE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)\s*:\s*(?P<command>.+)$")
MAX_PROCFILE_BYTES = 64 * 1024


def parse_procfile(text: str) -> dict[str, str]:
    """Process types in file order. Blank lines and ``#`` comments are
    skipped; a malformed line or a duplicated name fails the build with its
    line number, because silently dropping a process type would deploy an app
    without it."""
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if not match:
            raise BuildFailed(
                f"Procfile line {number} is not '<name>: <command>': {line[:80]!r}",
                step="detect",
            )
        name = match.group("name").lower()
        if name in processes:
            raise BuildFailed(
                f"Procfile line {number}: process type {name!r} is defined twice",
                step="detect",
            )
        processes[name] = match.group("command").strip()
    return processes


def read_procfile(source_dir: Path) -> dict[str, str]:
    """The app's process types, or an empty dict when it has no Procfile."""
    path = source_dir / "Procfile"
    if not path.is_file() or path.is_symlink():
        return {}
    if path.stat().st_size > MAX_PROCFILE_BYTES:
        raise BuildFailed("Procfile is larger than 64 KiB", step="detect")
    return parse_procfile(path.read_text(errors="replace"))
