"""``.dockerignore``: paths of the build context a Dockerfile's COPY and ADD
do not see. Patterns as Docker reads them: one per line, ``#`` comments,
``*`` and ``?`` within a path segment, ``**`` across segments, a leading
``!`` re-includes, the last matching line wins, and a pattern matching a
directory covers everything below it."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 256 * 1024


def _regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if pattern.startswith("/", i):
                out[-1] = "(?:.*/)?"
                i += 1
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "(?:/.*)?$")


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, re.Pattern[str]], ...] = ()  # (is exception, regex)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
            if pattern in (".", ""):
                continue
            rules.append((exception, _regex(pattern)))
        return cls(tuple(rules))

    def ignored(self, rel: str) -> bool:
        """Whether ``rel`` (relative to the context root) is left out."""
        result = False
        for exception, regex in self.rules:
            if regex.fullmatch(rel):
                result = not exception
        return result


def read_dockerignore(source_dir: Path) -> DockerIgnore:
    path = source_dir / ".dockerignore"
    if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_BYTES:
        return DockerIgnore()
    return DockerIgnore.parse(path.read_text(errors="replace"))
