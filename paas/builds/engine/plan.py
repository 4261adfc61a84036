"""What a build will do, as data: the base image, the steps that each add a
layer, and the image settings at the end. Buildpacks and the Dockerfile
reader produce a :class:`BuildPlan`; :mod:`build` carries it out. Keeping the
plan as plain data lets detection and Dockerfile errors be unit-tested
without runc or a registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from paas.builds.engine.ignore import DockerIgnore


@dataclass(frozen=True)
class BindMount:
    source: Path
    destination: str
    read_only: bool = True


@dataclass
class RunStep:
    """Run ``argv`` in a container on the layers so far; its changes are the
    new layer. ``keep`` limits the layer to those paths (a buildpack knows its
    output is only ``/app/.venv``; scratch files elsewhere are dropped).
    ``cache_key`` set: the layer is reused from the cache when the key matches
    and the command does not run at all."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str | None = None
    mounts: list[BindMount] = field(default_factory=list)
    keep: tuple[str, ...] | None = None
    cache_key: str | None = None
    installer: str | None = None  # "pip"/"npm": named in the "cached" log line
    # Dockerfile RUN: cached by the layers below + the command (like Docker).
    chain_cache: bool = False
    mkdirs: tuple[str, ...] = ()  # made in the upper before the step (its cwd)

    @property
    def command(self) -> str:
        if self.argv[:2] == ["/bin/sh", "-c"]:
            return self.argv[2]
        return " ".join(self.argv)


@dataclass(frozen=True)
class CopyItem:
    """One file or directory of the source going to ``destination`` (an
    absolute path in the image). A directory source copies its contents."""

    source: Path
    destination: str


@dataclass
class CopyStep:
    """Add source files as a layer, without a container (fast)."""

    name: str
    items: list[CopyItem]
    chown: tuple[int, int] = (0, 0)
    exclude: tuple[str, ...] = ()  # top-level names of a directory source to skip
    dirs: list[str] = field(default_factory=list)  # directories to create (WORKDIR)
    # .dockerignore: paths relative to ``context`` that are never copied.
    ignore: DockerIgnore = field(default_factory=DockerIgnore)
    context: Path | None = None


Step = RunStep | CopyStep


@dataclass
class ImageSettings:
    """The runnable part of the OCI image config."""

    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    workdir: str = "/app"
    user: str | None = None
    exposed_ports: list[str] = field(default_factory=list)  # "8080/tcp"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildPlan:
    kind: str
    base: str  # image reference of the base (the stack or a FROM image)
    steps: list[Step]
    settings: ImageSettings
    process_types: dict[str, str] = field(default_factory=dict)
