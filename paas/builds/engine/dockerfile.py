"""Reading a Dockerfile into a :class:`BuildPlan`.

Parsing is done by ``dockerfile-parse`` (line continuations, comments,
quoting); this module gives each supported instruction its Docker meaning.
Anything else fails the build naming the instruction and its line, rather
than building something other than what the author wrote.
"""

from __future__ import annotations

import glob
import io
import json
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import WordSplitter, extract_key_values

from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.ignore import DockerIgnore, read_dockerignore
from paas.builds.engine.plan import (
    BuildPlan,
    CopyItem,
    CopyStep,
    ImageSettings,
    RunStep,
)
from runtime_agent.host import safepath
from runtime_agent.host.errors import UnsafePath

SUPPORTED = (
    "FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR",
    "EXPOSE", "CMD", "ENTRYPOINT", "USER", "LABEL",
)  # fmt: skip
MAX_DOCKERFILE_BYTES = 1 << 20
STACK_ALIASES = ("stack",)
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://|^git@", re.IGNORECASE)
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_PORT_RE = re.compile(r"^\d{1,5}(/(tcp|udp))?$")


@dataclass(frozen=True)
class BaseImage:
    """What FROM resolved to: the full reference and the image's own env
    (``ENV PATH=/x:$PATH`` must see the base image's PATH)."""

    ref: str
    env: dict[str, str]
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    workdir: str = ""
    user: str | None = None
    exposed_ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def resolve_from(name: str, *, stack_ref: str, registry_host: str, line: int) -> str:
    """``FROM stack`` is the platform's stack; any other name is an image in
    the platform's registry (``FROM myapp:v3`` or ``FROM <registry>/myapp:v3``).
    Other registries are refused: the build network only reaches ours."""
    if name in STACK_ALIASES:
        return stack_ref
    first, slash, _rest = name.partition("/")
    has_host = bool(slash) and ("." in first or ":" in first or first == "localhost")
    if has_host:
        if first != registry_host:
            raise BuildFailed(
                f"Dockerfile line {line}: FROM {name}: only the stack ('FROM stack') or an "
                f"image in the platform registry ({registry_host}) can be used",
                step=f"FROM {name}",
            )
        return name
    if name == "scratch":
        raise BuildFailed(
            f"Dockerfile line {line}: FROM scratch is not supported; use 'FROM stack'",
            step="FROM scratch",
        )
    return f"{registry_host}/{name}"


@dataclass
class _State:
    source_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    settings: ImageSettings = field(default_factory=ImageSettings)
    steps: list[RunStep | CopyStep] = field(default_factory=list)
    base: BaseImage | None = None
    cmd_set: bool = False
    ignore: DockerIgnore = field(default_factory=DockerIgnore)
    base_allowed: Callable[[str], bool] | None = None

    def substitute(self, text: str) -> str:
        return str(WordSplitter(text, args=self.args, envs=self.env).dequote())


def read_dockerfile(source_dir: Path) -> str:
    """The Dockerfile's text: a regular file in the source, never a link
    (the worker must not read whatever a tenant's link points at)."""
    try:
        with safepath.opened_dir(source_dir) as fd:
            data = safepath.read_bytes(fd, "Dockerfile", limit=MAX_DOCKERFILE_BYTES + 1)
    except UnsafePath as exc:
        raise BuildFailed(
            "Dockerfile must be a regular file in the source, not a link", step="detect"
        ) from exc
    if len(data) > MAX_DOCKERFILE_BYTES:
        raise BuildFailed("Dockerfile is larger than 1 MiB", step="detect")
    return data.decode(errors="replace")


def parse_dockerfile(
    text: str,
    *,
    source_dir: Path,
    stack_ref: str,
    registry_host: str,
    load_base: Callable[[str], BaseImage],
    build_args: dict[str, str] | None = None,
    base_allowed: Callable[[str], bool] | None = None,
) -> BuildPlan:
    """The plan for a Dockerfile. ``load_base`` pulls the FROM image and
    returns its settings (called once, when FROM is reached), if
    ``base_allowed(ref)`` says the build may use it (without it: only the
    stack)."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
    state = _State(
        source_dir=source_dir, ignore=read_dockerignore(source_dir), base_allowed=base_allowed
    )
    given_args = dict(build_args or {})
    for entry in parser.structure:
        instruction = str(entry["instruction"]).upper()
        line = int(entry["startline"]) + 1
        value = str(entry["value"])
        if instruction == "COMMENT":
            continue
        if instruction not in SUPPORTED:
            raise BuildFailed(
                f"Dockerfile line {line}: the {instruction} instruction is not supported "
                f"(supported: {', '.join(SUPPORTED)})",
                step=f"Dockerfile line {line}",
                command=str(entry["content"]).strip()[:200],
            )
        if instruction != "FROM" and instruction != "ARG" and state.base is None:
            raise BuildFailed(
                f"Dockerfile line {line}: {instruction} before FROM",
                step=f"Dockerfile line {line}",
            )
        _HANDLERS[instruction](state, value, line, given_args, stack_ref, registry_host, load_base)
    if state.base is None:
        raise BuildFailed("Dockerfile has no FROM instruction", step="Dockerfile")
    return BuildPlan(
        kind="dockerfile",
        base=state.base.ref,
        steps=state.steps,
        settings=state.settings,
    )


# --- instruction handlers -----------------------------------------------------
# Each takes (state, value, line, build_args, stack_ref, registry_host, load_base);
# most use only the first three.


def _from(state: _State, value: str, line: int, build_args: dict[str, str], stack_ref: str,
          registry_host: str, load_base: Callable[[str], BaseImage]) -> None:  # fmt: skip
    if state.base is not None:
        raise BuildFailed(
            f"Dockerfile line {line}: a second FROM (multi-stage builds) is not supported",
            step=f"FROM {value}",
        )
    words = value.split()
    words = [w for w in words if not w.startswith("--platform")]
    if not words or (len(words) not in (1, 3)) or (len(words) == 3 and words[1].upper() != "AS"):
        raise BuildFailed(f"Dockerfile line {line}: bad FROM {value!r}", step=f"FROM {value}")
    name = state.substitute(words[0])
    ref = resolve_from(name, stack_ref=stack_ref, registry_host=registry_host, line=line)
    allowed = state.base_allowed or (lambda r: False)
    if ref != stack_ref and not allowed(ref):
        # Before any pull: the worker's registry credential reads every
        # team's images.
        raise BuildFailed(
            f"Dockerfile line {line}: FROM {name}: a build may start from the stack "
            "('FROM stack'), an image of an app of its own team, or an image the platform "
            "allows (PAAS_BUILD_ALLOWED_IMAGES); this is none of them",
            step=f"FROM {name}",
        )
    base = load_base(ref)
    state.base = base
    # ARGs declared before FROM are only usable in FROM (Docker's rule).
    state.args = {}
    state.env = dict(base.env)
    state.settings = ImageSettings(
        env=dict(base.env),
        cmd=base.cmd,
        entrypoint=base.entrypoint,
        workdir=base.workdir or "/",
        user=base.user,
        exposed_ports=list(base.exposed_ports),
        labels=dict(base.labels),
    )


def _arg(state: _State, value: str, line: int, build_args: dict[str, str], *_: object) -> None:
    name, eq, default = value.strip().partition("=")
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise BuildFailed(f"Dockerfile line {line}: bad ARG {value!r}", step=f"ARG {value}")
    if name in build_args:
        state.args[name] = build_args[name]
    elif eq:
        state.args[name] = state.substitute(default)
    else:
        state.args[name] = ""


def _env(state: _State, value: str, line: int, *_: object) -> None:
    try:
        pairs = extract_key_values(True, state.args, state.env, value)
    except ValueError as exc:
        raise BuildFailed(f"Dockerfile line {line}: ENV: {exc}", step=f"ENV {value}") from exc
    for key, val in pairs:
        state.env[key] = val
        state.settings.env[key] = val


def _label(state: _State, value: str, line: int, *_: object) -> None:
    try:
        pairs = extract_key_values(True, state.args, state.env, value)
    except ValueError as exc:
        raise BuildFailed(f"Dockerfile line {line}: LABEL: {exc}", step=f"LABEL {value}") from exc
    state.settings.labels.update(dict(pairs))


def _exec_or_shell(value: str) -> list[str]:
    """JSON array (exec form) or a string for /bin/sh -c (shell form)."""
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
            return list(parsed)
    return ["/bin/sh", "-c", value]


def _run(state: _State, value: str, line: int, *_: object) -> None:
    argv = _exec_or_shell(value)
    # ARG values are visible to RUN as environment variables, ENV wins.
    env = {**state.args, **state.env}
    state.steps.append(
        RunStep(
            name=f"RUN {value.strip()}"[:200],
            argv=argv,
            env=env,
            workdir=state.settings.workdir or "/",
            user=state.settings.user,
            chain_cache=True,
        )
    )


def _cmd(state: _State, value: str, line: int, *_: object) -> None:
    state.settings.cmd = _exec_or_shell(value)
    state.cmd_set = True


def _entrypoint(state: _State, value: str, line: int, *_: object) -> None:
    state.settings.entrypoint = _exec_or_shell(value)
    if not state.cmd_set:
        # Docker: a new ENTRYPOINT drops the CMD inherited from the base.
        state.settings.cmd = None


def _workdir(state: _State, value: str, line: int, *_: object) -> None:
    path = state.substitute(value.strip())
    path = posixpath.normpath(posixpath.join(state.settings.workdir or "/", path))
    state.settings.workdir = path
    state.steps.append(CopyStep(name=f"WORKDIR {path}", items=[], dirs=[path]))


def _user(state: _State, value: str, line: int, *_: object) -> None:
    user = state.substitute(value.strip())
    if not user or " " in user:
        raise BuildFailed(f"Dockerfile line {line}: bad USER {value!r}", step=f"USER {value}")
    state.settings.user = user


def _expose(state: _State, value: str, line: int, *_: object) -> None:
    for word in state.substitute(value).split():
        if not _PORT_RE.fullmatch(word) or not 0 < int(word.split("/")[0]) < 65536:
            raise BuildFailed(
                f"Dockerfile line {line}: EXPOSE {word!r} is not a port like 8080 or 8080/tcp",
                step=f"EXPOSE {value}",
            )
        port = word if "/" in word else f"{word}/tcp"
        if port not in state.settings.exposed_ports:
            state.settings.exposed_ports.append(port)


def _copy(state: _State, value: str, line: int, *_: object) -> None:
    _copy_or_add(state, value, line, "COPY")


def _add(state: _State, value: str, line: int, *_: object) -> None:
    _copy_or_add(state, value, line, "ADD")


def _copy_or_add(state: _State, value: str, line: int, instruction: str) -> None:
    step_name = f"{instruction} {value.strip()}"[:200]
    words = _copy_words(state, value)
    chown = (0, 0)
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--chown="):
            chown = _numeric_owner(flag.split("=", 1)[1], line, step_name)
        else:
            raise BuildFailed(
                f"Dockerfile line {line}: {instruction} {flag.split('=')[0]} is not supported",
                step=step_name,
            )
    if len(words) < 2:
        raise BuildFailed(
            f"Dockerfile line {line}: {instruction} needs a source and a destination",
            step=step_name,
        )
    *sources, dest = words
    workdir = state.settings.workdir or "/"
    dest_abs = posixpath.normpath(posixpath.join(workdir, dest))
    if dest.endswith(("/", "/.")) or dest == ".":
        dest_abs = dest_abs.rstrip("/") + "/"  # "into this directory"
    expanded: list[Path] = []
    for src in sources:
        if instruction == "ADD" and _URL_RE.match(src):
            raise BuildFailed(
                f"Dockerfile line {line}: ADD from a URL ({src}) is not supported; "
                "add the file to the source or download it in a RUN step",
                step=step_name,
            )
        if instruction == "ADD" and src.endswith(_ARCHIVE_SUFFIXES):
            raise BuildFailed(
                f"Dockerfile line {line}: ADD of an archive ({src}) is not supported "
                "(no auto-extraction); COPY it and extract it in a RUN step",
                step=step_name,
            )
        expanded.extend(_context_paths(state, src, line, step_name))
    if len(expanded) > 1 and not dest_abs.endswith("/"):
        dest_abs += "/"  # several sources always go into a directory
    items = [CopyItem(path, dest_abs) for path in expanded]
    state.steps.append(
        CopyStep(
            name=step_name, items=items, chown=chown, ignore=state.ignore, context=state.source_dir
        )
    )


def _copy_words(state: _State, value: str) -> list[str]:
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
            if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
                return [state.substitute(p) for p in parsed]
        except ValueError:
            pass
    return [state.substitute(w) for w in WordSplitter(stripped).split(dequote=False)]


def _numeric_owner(spec: str, line: int, step: str) -> tuple[int, int]:
    user, _, group = spec.partition(":")
    if not user.isdigit() or (group and not group.isdigit()):
        raise BuildFailed(
            f"Dockerfile line {line}: --chown takes numeric ids (like 1000:1000), not {spec!r}",
            step=step,
        )
    return int(user), int(group or user)


def _context_paths(state: _State, pattern: str, line: int, step: str) -> list[Path]:
    """The source files a COPY names, which must exist, stay inside the
    build context (no ``..``, no symlink leading out) and not be ignored by
    .dockerignore."""
    source_dir = state.source_dir
    root = os.path.realpath(source_dir)
    rel = posixpath.normpath(pattern.lstrip("/")) if pattern not in (".", "./") else "."
    if rel == ".." or rel.startswith("../"):
        raise BuildFailed(
            f"Dockerfile line {line}: {pattern} is outside the build context", step=step
        )
    if any(ch in rel for ch in "*?["):
        matches = sorted(glob.glob(os.path.join(root, rel)))
    else:
        candidate = os.path.join(root, rel)
        matches = [candidate] if os.path.lexists(candidate) else []
    matches = [
        m for m in matches
        if m == root or not state.ignore.ignored(os.path.relpath(m, root))
    ]  # fmt: skip
    if not matches:
        raise BuildFailed(
            f"Dockerfile line {line}: {pattern} was not found in the source "
            "(or .dockerignore leaves it out)",
            step=step,
        )
    out = []
    for match in matches:
        real = os.path.realpath(match)
        if real != root and not real.startswith(root + os.sep):
            raise BuildFailed(
                f"Dockerfile line {line}: {pattern} leads outside the build context", step=step
            )
        out.append(Path(match))
    return out


_HANDLERS: dict[str, Callable[..., None]] = {
    "FROM": _from,
    "ARG": _arg,
    "ENV": _env,
    "LABEL": _label,
    "RUN": _run,
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "WORKDIR": _workdir,
    "USER": _user,
    "EXPOSE": _expose,
    "COPY": _copy,
    "ADD": _add,
}
