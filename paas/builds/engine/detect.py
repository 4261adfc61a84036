"""Which kind of app a source tree is, decided in a fixed order: a Dockerfile
wins (the author said exactly how to build), then a Python dependency file,
Node.js's package.json, then the smallest Python apps (a lone ``app.py``,
``main.py`` or ``wsgi.py``, or a Procfile whose commands run python: the
classic first demo has no dependency file at all), and a static site last
(an ``index.html`` is common in the other kinds too).

Every rule carries the reason a person reads in the build log, and when no
rule matches the error lists every file looked for and points at the
README's "Making your app buildable" (a Procfile or a Dockerfile always
works)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.procfile import read_procfile

HELP = (
    "see 'Making your app buildable' in the platform's README "
    "(README.md#making-your-app-buildable): add a Procfile with a 'web:' line "
    "or a Dockerfile"
)


class AppKind(enum.StrEnum):
    DOCKERFILE = "dockerfile"
    PYTHON = "python"
    NODE = "node"
    STATIC = "static"


@dataclass(frozen=True)
class Detection:
    kind: AppKind
    file: str  # the file that decided it
    reason: str  # for the build log: why this kind


@dataclass(frozen=True)
class Rule:
    kind: AppKind
    files: tuple[str, ...]
    reason: str  # "{file}" is replaced by the file found


# In detection order.
RULES: tuple[Rule, ...] = (
    Rule(AppKind.DOCKERFILE, ("Dockerfile",), "{file} found: built as it says"),
    Rule(
        AppKind.PYTHON,
        ("requirements.txt", "pyproject.toml"),
        "{file} found: its dependencies are installed in a virtualenv",
    ),
    Rule(AppKind.NODE, ("package.json",), "{file} found: npm installs its dependencies"),
    Rule(
        AppKind.PYTHON,
        ("app.py", "main.py", "wsgi.py"),
        "{file} found and no dependency file: nothing to install",
    ),
)
STATIC_RULE = Rule(
    AppKind.STATIC, ("index.html", "public/index.html"), "{file} found: served as static files"
)
PROCFILE_PYTHON = "Procfile running python"
# A Procfile command that starts a Python program (after an optional
# "exec" or environment assignments).
_PYTHON_COMMAND_RE = re.compile(
    r"^(exec\s+)?([A-Za-z_][A-Za-z0-9_]*=\S*\s+)*"
    r"(\S*/)?(python3?(\.\d+)?|gunicorn|uvicorn|hypercorn|waitress-serve)(\s|$)"
)


def _present(source_dir: Path, rel: str) -> bool:
    # A symlink could point anywhere (it was uploaded): only real files count.
    path = source_dir / rel
    return path.is_file() and not path.is_symlink()


def runs_python(process_types: dict[str, str]) -> str | None:
    """The first process type whose command runs python, if any."""
    for name, command in process_types.items():
        if _PYTHON_COMMAND_RE.match(command.strip()):
            return name
    return None


def detect(source_dir: Path) -> Detection:
    """The kind, the file that decided it and why. Raises
    :class:`BuildFailed` listing what was looked for."""
    for rule in RULES:
        for rel in rule.files:
            if _present(source_dir, rel):
                return Detection(rule.kind, rel, rule.reason.format(file=rel))
    process = runs_python(read_procfile(source_dir))
    if process is not None:
        reason = (
            f"the Procfile's {process!r} process runs python and no dependency file: "
            "nothing to install"
        )
        return Detection(AppKind.PYTHON, "Procfile", reason)
    for rel in STATIC_RULE.files:
        if _present(source_dir, rel):
            return Detection(STATIC_RULE.kind, rel, STATIC_RULE.reason.format(file=rel))
    raise BuildFailed(
        f"cannot tell how to build this source: looked for {looked_for()} "
        f"at the top of the archive and found none; {HELP}",
        step="detect",
    )


def looked_for() -> str:
    names = [rel for rule in RULES for rel in rule.files]
    return ", ".join([*names, f"a {PROCFILE_PYTHON}", *STATIC_RULE.files])


def detect_kind(source_dir: Path) -> tuple[AppKind, str]:
    """The kind and the file that decided it."""
    found = detect(source_dir)
    return found.kind, found.file
