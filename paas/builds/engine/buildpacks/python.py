"""Python: a virtualenv at /app/.venv with the dependencies of
requirements.txt (or pyproject.toml's [project] dependencies), in its own
layer keyed by the dependency list, the stack and this buildpack's version:
unchanged dependencies reuse the layer and pip does not run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from paas.builds.engine.buildpacks.common import (
    BuildpackInput,
    real_file,
    settings,
    source_step,
    web_command,
)
from paas.builds.engine.cache import local_tree_digest
from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.plan import BindMount, BuildPlan, RunStep, Step
from paas.builds.engine.source import hash_parts

VERSION = "python-2"
VENV = "/app/.venv"
PIP_CACHE = "/var/cache/paas/pip"
DEPS_MOUNT = "/var/lib/paas/deps"
SOURCE_MOUNT = "/workspace"
# wsgi.py's ``application`` (or ``app``) on $PORT with wsgiref, for an app
# that names no server; a Procfile or gunicorn in requirements does better.
WSGIREF_COMMAND = (
    "python3 -c 'import os, wsgi; from wsgiref.simple_server import make_server; "
    'make_server("0.0.0.0", int(os.environ["PORT"]), '
    'getattr(wsgi, "application", None) or wsgi.app).serve_forever()\''
)
_INCLUDE_RE = re.compile(r"^\s*(-r|-c|--requirement|--constraint)[\s=]+(\S+)")
_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirements_text(source_dir: Path) -> tuple[str, str]:
    """(the dependency list, where it came from). requirements.txt wins over
    pyproject.toml; an empty text means no dependencies (a one-file app)."""
    req = source_dir / "requirements.txt"
    if real_file(req):
        return req.read_text(errors="replace"), "requirements.txt"
    pyproject = source_dir / "pyproject.toml"
    if not real_file(pyproject):
        return "", ""
    try:
        doc = tomllib.loads(pyproject.read_text(errors="replace"))
    except tomllib.TOMLDecodeError as exc:
        raise BuildFailed(f"pyproject.toml is not valid TOML: {exc}", step="detect") from exc
    deps = doc.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildFailed(
            "pyproject.toml: [project] dependencies must be a list of strings", step="detect"
        )
    return "".join(f"{d}\n" for d in deps), "pyproject.toml"


def has_requirements(text: str) -> bool:
    return any(line.split("#", 1)[0].strip() for line in text.splitlines())


def requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        if line.strip().startswith("-"):
            continue
        m = _NAME_RE.match(line)
        if m:
            names.add(m.group(1).lower().replace("_", "-"))
    return names


def _included_files(source_dir: Path, text: str) -> list[bytes]:
    # -r/-c files change what gets installed: they are part of the cache key.
    out = []
    for line in text.splitlines():
        m = _INCLUDE_RE.match(line)
        if m:
            path = source_dir / m.group(2)
            out.append(path.read_bytes() if real_file(path) else b"missing:" + m.group(2).encode())
    return out


def _local_requirements(source_dir: Path, text: str) -> list[bytes]:
    # A local path (./pkg, -e ./pkg, file:./pkg, /workspace/pkg) installs
    # the source's own files: their content is part of the cache key.
    out = []
    for line in text.splitlines():
        for token in line.split("#", 1)[0].split():
            path = _local_path(token)
            if path is not None:
                out.append(path.encode() + b"\0" + local_tree_digest(source_dir, path))
    return out


def _local_path(token: str) -> str | None:
    for prefix in ("--editable=", "file://", "file:"):
        token = token.removeprefix(prefix)
    if token.startswith(f"{SOURCE_MOUNT}/"):
        return token[len(SOURCE_MOUNT) + 1 :] or "."
    if token == "." or token.startswith(("./", "../")):
        return token
    return None


def default_command(source_dir: Path, names: set[str]) -> str | None:
    if "gunicorn" in names:
        module = _wsgi_module(source_dir)
        if module:
            return f"gunicorn --bind 0.0.0.0:$PORT {module}"
    for script in ("app.py", "main.py"):
        if real_file(source_dir / script):
            return f"python3 {script}"
    if real_file(source_dir / "wsgi.py"):
        # No WSGI server installed: the standard library's serves it.
        return WSGIREF_COMMAND
    return None


# Servers a Procfile may run that the stack does not have: the package
# that installs each.
SERVER_PACKAGES = {
    "gunicorn": "gunicorn",
    "uvicorn": "uvicorn",
    "hypercorn": "hypercorn",
    "waitress-serve": "waitress",
}
_PROGRAM_RE = re.compile(r"^(?:exec\s+)?(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:\S*/)?(\S+)")


def check_server_installed(command: str, names: set[str], origin: str) -> None:
    """A Procfile that runs gunicorn (say) with no dependency file listing
    it would build an image that cannot start: say so at build time."""
    match = _PROGRAM_RE.match(command.strip())
    package = SERVER_PACKAGES.get(match.group(1)) if match else None
    if package is None or package in names:
        return
    where = f"{origin} does not list it" if origin else "there is no requirements.txt"
    raise BuildFailed(
        f"the Procfile runs {match.group(1) if match else package}, which is not installed: "
        f"{where}; add {package!r} to requirements.txt",
        step="detect",
    )


def _wsgi_module(source_dir: Path) -> str | None:
    for script, target in (("app.py", "app:app"), ("main.py", "main:app"), ("wsgi.py", "wsgi")):
        if real_file(source_dir / script):
            return target
    for wsgi in sorted(source_dir.glob("*/wsgi.py")):  # a Django project
        return f"{wsgi.parent.name}.wsgi"
    return None


def plan(inp: BuildpackInput) -> BuildPlan:
    text, origin = requirements_text(inp.source_dir)
    steps: list[Step] = []
    if has_requirements(text):
        steps.append(_install_step(inp, text, origin))
    names = requirement_names(text)
    web = web_command(inp.process_types, default_command(inp.source_dir, names), "Python")
    for command in inp.process_types.values():
        check_server_installed(command, names, origin)
    path = inp.base.env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env = {"PATH": f"{VENV}/bin:{path}", "PYTHONUNBUFFERED": "1"}
    steps.append(source_step(inp.source_dir, exclude=(".venv", "venv", "__pycache__")))
    return BuildPlan(
        kind="python",
        base=inp.base.ref,
        steps=steps,
        settings=settings(inp.base, env=env, web=web),
        process_types=dict(inp.process_types),
    )


def _install_step(inp: BuildpackInput, text: str, origin: str) -> RunStep:
    deps_dir = inp.scratch_dir / "python-deps"
    deps_dir.mkdir(parents=True, exist_ok=True)
    (deps_dir / "requirements.txt").write_text(text)
    pip_cache = inp.config.cache_dir / "downloads" / "pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": inp.base.env.get("PATH", "/usr/bin:/bin"),
        "PIP_CACHE_DIR": PIP_CACHE,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_PROGRESS_BAR": "off",
        "HOME": "/root",
    }
    if inp.config.pip_index_url:
        env["PIP_INDEX_URL"] = inp.config.pip_index_url
        parsed = urlsplit(inp.config.pip_index_url)
        if parsed.scheme == "http" and parsed.hostname:
            # pip ignores a plain-http index unless told to trust its host.
            env["PIP_TRUSTED_HOST"] = parsed.hostname
    # The stack's pip installs into a venv made without its own pip: one
    # pip, and about 3 s less than ensurepip per cold install.
    script = (
        f"python3 -m venv --without-pip {VENV} && "
        f"python3 -m pip --python {VENV}/bin/python install --no-warn-script-location "
        f"-r {DEPS_MOUNT}/requirements.txt && "
        # Hash-based .pyc files stay valid under the layer's fixed mtimes.
        f"python3 -m compileall -q -f --invalidation-mode unchecked-hash {VENV} >/dev/null"
    )
    key = hash_parts(
        VERSION, inp.base_digest, text, *(_included_files(inp.source_dir, text)),
        *_local_requirements(inp.source_dir, text), inp.config.pip_index_url or "",
    )  # fmt: skip
    return RunStep(
        name=f"install dependencies ({origin})",
        argv=["/bin/sh", "-c", script],
        env=env,
        workdir=SOURCE_MOUNT,
        mounts=[
            BindMount(inp.source_dir, SOURCE_MOUNT, read_only=True),
            BindMount(deps_dir, DEPS_MOUNT, read_only=True),
            BindMount(pip_cache, PIP_CACHE, read_only=False),
        ],
        keep=(VENV.lstrip("/"),),
        cache_key=key,
        installer="pip",
    )
