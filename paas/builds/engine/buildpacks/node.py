"""Node.js: ``npm ci`` with a lockfile, else ``npm install``, into
/app/node_modules, in a layer keyed by package.json + lockfile, the stack
and this buildpack's version; then ``npm start``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paas.builds.engine.buildpacks.common import (
    APP_DIR,
    BuildpackInput,
    real_file,
    settings,
    source_step,
    web_command,
)
from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.plan import BindMount, BuildPlan, RunStep, Step
from paas.builds.engine.source import hash_parts

VERSION = "node-1"
NPM_CACHE = "/var/cache/paas/npm"
SOURCE_MOUNT = "/workspace"
LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")


def read_package_json(source_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((source_dir / "package.json").read_text(errors="replace"))
    except ValueError as exc:
        raise BuildFailed(f"package.json is not valid JSON: {exc}", step="detect") from exc
    if not isinstance(doc, dict):
        raise BuildFailed("package.json must be a JSON object", step="detect")
    return doc


def lockfile(source_dir: Path) -> str | None:
    return next((name for name in LOCKFILES if real_file(source_dir / name)), None)


def default_command(source_dir: Path, package: dict[str, Any]) -> str | None:
    scripts = package.get("scripts")
    if isinstance(scripts, dict) and isinstance(scripts.get("start"), str):
        return "npm start"
    for script in ("server.js", "index.js", "app.js"):
        if real_file(source_dir / script):
            return f"node {script}"
    return None


def plan(inp: BuildpackInput) -> BuildPlan:
    package = read_package_json(inp.source_dir)
    lock = lockfile(inp.source_dir)
    steps: list[Step] = []
    if lock or package.get("dependencies") or package.get("devDependencies"):
        steps.append(_install_step(inp, lock))
    web = web_command(inp.process_types, default_command(inp.source_dir, package), "Node.js")
    env = {"NODE_ENV": "production", "npm_config_update_notifier": "false"}
    steps.append(source_step(inp.source_dir, exclude=("node_modules",)))
    return BuildPlan(
        kind="node",
        base=inp.base.ref,
        steps=steps,
        settings=settings(inp.base, env=env, web=web),
        process_types=dict(inp.process_types),
    )


def _install_step(inp: BuildpackInput, lock: str | None) -> RunStep:
    npm_cache = inp.config.cache_dir / "downloads" / "npm"
    npm_cache.mkdir(parents=True, exist_ok=True)
    files = ["package.json"] + ([lock] if lock else [])
    copy = " ".join(f"{SOURCE_MOUNT}/{name}" for name in files)
    installer = "npm ci" if lock else "npm install"
    script = f"cp {copy} {APP_DIR}/ && {installer} --no-audit --no-fund"
    env = {
        "PATH": inp.base.env.get("PATH", "/usr/bin:/bin"),
        "HOME": "/root",
        "npm_config_cache": NPM_CACHE,
        "npm_config_update_notifier": "false",
    }
    if inp.config.npm_registry_url:
        env["npm_config_registry"] = inp.config.npm_registry_url
    key = hash_parts(
        VERSION, inp.base_digest, *[(inp.source_dir / f).read_bytes() for f in files],
        inp.config.npm_registry_url or "",
    )  # fmt: skip
    return RunStep(
        name=f"install dependencies ({installer})",
        argv=["/bin/sh", "-c", script],
        env=env,
        workdir=APP_DIR,
        mounts=[
            BindMount(inp.source_dir, SOURCE_MOUNT, read_only=True),
            BindMount(npm_cache, NPM_CACHE, read_only=False),
        ],
        keep=(f"{APP_DIR.lstrip('/')}/node_modules",),
        cache_key=key,
        installer="npm",
        mkdirs=(APP_DIR,),
    )
