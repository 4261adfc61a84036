"""Branch and ref names a push or a setting may use: git's own rules
(check-ref-format) made stricter, so a name is plain text everywhere it is
shown, logged or passed to git as an argument."""

from __future__ import annotations

import re

from paas.core.errors import ValidationFailed

BRANCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
SHA_RE = re.compile(r"[0-9a-f]{40}")
ZERO_SHA = "0" * 40
# Refs a push may update: branches and tags, nothing else (no refs/notes,
# no refs/remotes, no HEAD).
PUSHABLE_PREFIXES = ("refs/heads/", "refs/tags/")


def branch_problem(name: str) -> str | None:
    """Why ``name`` is not an acceptable branch name, or None."""
    if not BRANCH_RE.fullmatch(name):
        return "letters, digits, '.', '_', '-' and '/', starting with a letter or digit"
    parts = name.split("/")
    if any(not p or p.startswith(".") or p.endswith(".lock") for p in parts):
        return "no empty part, no part starting with '.' or ending with '.lock'"
    if ".." in name or name.endswith(".") or "@{" in name:
        return "no '..', no '@{' and no '.' at the end"
    return None


def branch_validate(name: str) -> str:
    name = name.strip()
    problem = branch_problem(name)
    if problem:
        raise ValidationFailed(f"{name!r} is not a valid branch name: {problem}.", field="branch")
    return name


def ref_problem(ref: str) -> str | None:
    """Why a pushed ref name is refused, or None."""
    for prefix in PUSHABLE_PREFIXES:
        if ref.startswith(prefix):
            problem = branch_problem(ref[len(prefix) :])
            return f"bad ref name ({problem})" if problem else None
    return "only branches and tags can be pushed"
