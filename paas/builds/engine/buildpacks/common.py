"""What every buildpack shares: the app's settings in the image (PORT, /app,
the web command run through a shell so ``$PORT`` expands)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paas.builds.engine.config import BuildConfig
from paas.builds.engine.dockerfile import BaseImage
from paas.builds.engine.errors import BuildFailed
from paas.builds.engine.plan import CopyItem, CopyStep, ImageSettings
from paas.builds.engine.source import IGNORED_TOP_LEVEL

DEFAULT_PORT = "8080"
APP_DIR = "/app"


@dataclass(frozen=True)
class BuildpackInput:
    source_dir: Path
    base: BaseImage
    base_digest: str
    config: BuildConfig
    process_types: dict[str, str]
    scratch_dir: Path  # for generated files the steps mount (per build)


def shell(command: str) -> list[str]:
    """A Procfile-style command as an image Cmd: ``exec`` so the app is the
    container's init and gets its signals."""
    return ["/bin/sh", "-c", f"exec {command}"]


def settings(base: BaseImage, *, env: dict[str, str], web: str) -> ImageSettings:
    merged = {**base.env, "PORT": DEFAULT_PORT, **env}
    return ImageSettings(
        env=merged,
        cmd=shell(web),
        workdir=APP_DIR,
        exposed_ports=[f"{DEFAULT_PORT}/tcp"],
    )


def web_command(process_types: dict[str, str], default: str | None, kind: str) -> str:
    """The Procfile's web line wins; then the buildpack's default; an app with
    only other process types (a worker) runs the first one."""
    if "web" in process_types:
        return process_types["web"]
    if default:
        return default
    if process_types:
        return next(iter(process_types.values()))
    raise BuildFailed(
        f"no command to run this {kind} app: add a Procfile with a 'web:' line",
        step="detect",
    )


def source_step(source_dir: Path, exclude: tuple[str, ...] = ()) -> CopyStep:
    return CopyStep(
        name="add source",
        items=[CopyItem(source_dir, APP_DIR)],
        exclude=IGNORED_TOP_LEVEL + exclude,
    )


def real_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()
