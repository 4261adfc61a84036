"""Which kind of app a source tree is, decided in a fixed order: a Dockerfile
wins (the author said exactly how to build), then Python, Node.js, and a
static site last (an ``index.html`` is common in the other kinds too)."""

from __future__ import annotations

import enum
from pathlib import Path

from paas.builds.engine.errors import BuildFailed


class AppKind(enum.StrEnum):
    DOCKERFILE = "dockerfile"
    PYTHON = "python"
    NODE = "node"
    STATIC = "static"


# (kind, files any one of which selects it), in detection order.
RULES: tuple[tuple[AppKind, tuple[str, ...]], ...] = (
    (AppKind.DOCKERFILE, ("Dockerfile",)),
    (AppKind.PYTHON, ("requirements.txt", "pyproject.toml")),
    (AppKind.NODE, ("package.json",)),
    (AppKind.STATIC, ("index.html", "public/index.html")),
)


def _present(source_dir: Path, rel: str) -> bool:
    # A symlink could point anywhere (it was uploaded): only real files count.
    path = source_dir / rel
    return path.is_file() and not path.is_symlink()


def detect_kind(source_dir: Path) -> tuple[AppKind, str]:
    """The kind and the file that decided it."""
    for kind, files in RULES:
        for rel in files:
            if _present(source_dir, rel):
                return kind, rel
    looked_for = ", ".join(rel for _kind, files in RULES for rel in files)
    raise BuildFailed(
        "cannot tell how to build this source: none of "
        f"{looked_for} was found at the top of the archive",
        step="detect",
    )
