"""Which files `paas deploy` leaves out: .gitignore rules (at any level of
the tree) and .paasignore (at its top, same syntax), like git would.

The syntax: ``#`` comments, ``!`` re-includes, a trailing ``/`` matches
directories only, a ``/`` elsewhere anchors the pattern to its file's
directory (otherwise it matches a name at any depth), ``*``, ``?``,
``[...]`` and ``**``. As in git, nothing inside an excluded directory can
be re-included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    anchored: bool
    base: str  # the directory of the file the rule came from ("" at the top)

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not rel.startswith(self.base + "/"):
                return False
            rel = rel[len(self.base) + 1 :]
        target = rel if self.anchored else PurePosixPath(rel).name
        return self.regex.fullmatch(target) is not None


def parse(text: str, base: str = "") -> list[Rule]:
    rules = []
    for raw in text.splitlines():
        rule = _rule(raw, base)
        if rule is not None:
            rules.append(rule)
    return rules


def _rule(line: str, base: str) -> Rule | None:
    if not line.endswith("\\ "):
        line = line.rstrip(" ")
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate or line.startswith("\\!") or line.startswith("\\#"):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    return Rule(re.compile(_translate(line.lstrip("/"))), negate, dir_only, anchored, base)


def _translate(pattern: str) -> str:
    out, i, n = [], 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def ignored(rules: list[Rule], rel: str, is_dir: bool) -> bool:
    """The last matching rule decides, as in git."""
    verdict = False
    for rule in rules:
        if rule.matches(rel, is_dir):
            verdict = not rule.negate
    return verdict
