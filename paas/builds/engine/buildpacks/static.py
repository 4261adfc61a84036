"""A static site: the files as they are, served on $PORT by the stack's
python3 (http.server), from the root or from public/."""

from __future__ import annotations

from paas.builds.engine.buildpacks.common import (
    APP_DIR,
    BuildpackInput,
    real_file,
    settings,
    source_step,
    web_command,
)
from paas.builds.engine.plan import BuildPlan


def document_root(inp: BuildpackInput) -> str:
    if real_file(inp.source_dir / "index.html"):
        return APP_DIR
    return f"{APP_DIR}/public"


def plan(inp: BuildpackInput) -> BuildPlan:
    root = document_root(inp)
    default = f'python3 -m http.server --bind 0.0.0.0 --directory {root} "$PORT"'
    web = web_command(inp.process_types, default, "static")
    return BuildPlan(
        kind="static",
        base=inp.base.ref,
        steps=[source_step(inp.source_dir)],
        settings=settings(inp.base, env={}, web=web),
        process_types=dict(inp.process_types),
    )
