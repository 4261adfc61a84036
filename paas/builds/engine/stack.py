"""The stack: the base image every buildpack build starts from, like a Heroku
stack. A Debian root filesystem made with debootstrap, turned into one OCI
layer and pushed as ``stacks/<name>:<date>``.

debootstrap's own ``--include`` resolver does not follow virtual packages
(npm's dependencies on Debian provide each other), so the root filesystem is
made in two steps: a ``minbase`` debootstrap, then ``apt-get install`` inside
it, which resolves dependencies properly.

Everything is cached under ``<cache_dir>/stacks/<key>/`` where the key hashes
the suite, mirror and package list: changing the list makes a new stack, an
unchanged list reuses the root filesystem, the packed layer and the pushed
image.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from paas.builds.engine.plan import ImageSettings
from paas.builds.engine.publish import Layer, image_config, push_image
from runtime_agent.host.cmd import run
from runtime_agent.host.settings import SettingError, Settings
from runtime_agent.images.layers import LayerInfo, pack_layer
from runtime_agent.images.registry import RegistryClient

# Bumped when the way a stack is made changes (so cached stacks are rebuilt).
STACK_FORMAT = "3"
DEFAULT_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "nodejs",
    "npm",
    "ca-certificates",
)
DEBOOTSTRAP_TIMEOUT_S = 900
APT_TIMEOUT_S = 1200
# The stack's own PATH and locale; build and app images add to them.
STACK_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


@dataclass(frozen=True)
class StackSpec:
    name: str = "bookworm"
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    env: dict[str, str] = field(default_factory=lambda: dict(STACK_ENV))

    def key(self) -> str:
        text = json.dumps(
            [STACK_FORMAT, self.suite, self.mirror, sorted(set(self.packages))],
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def stack_dir(spec: StackSpec, cache_dir: Path) -> Path:
    return cache_dir / "stacks" / f"{spec.name}-{spec.key()}"


def build_rootfs(spec: StackSpec, cache_dir: Path, log: Callable[[str], None]) -> Path:
    """The stack's root filesystem, made once (a ``.complete`` marker says a
    previous run finished; a half-made one is thrown away and redone)."""
    base = stack_dir(spec, cache_dir)
    rootfs = base / "rootfs"
    if (base / ".complete").exists():
        log(f"stack {spec.name}: root filesystem cached ({spec.key()})")
        return rootfs
    if rootfs.exists():
        shutil.rmtree(rootfs)
    base.mkdir(parents=True, exist_ok=True)
    log(f"stack {spec.name}: debootstrap {spec.suite} from {spec.mirror} (about a minute)")
    run(
        ["debootstrap", "--variant=minbase", spec.suite, str(rootfs), spec.mirror],
        timeout=DEBOOTSTRAP_TIMEOUT_S,
    )
    _apt_install(rootfs, spec.packages, log)
    _tidy(rootfs)
    (base / ".complete").write_text(json.dumps({"packages": sorted(spec.packages)}))
    return rootfs


def _apt_install(rootfs: Path, packages: tuple[str, ...], log: Callable[[str], None]) -> None:
    log(f"stack: apt-get install {' '.join(packages)}")
    # No daemons may start inside the chroot while packages are configured.
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {
        "DEBIAN_FRONTEND": "noninteractive",
        "PATH": STACK_ENV["PATH"],
        "LANG": "C.UTF-8",
    }
    proc_dir = rootfs / "proc"
    run(["mount", "-t", "proc", "proc", str(proc_dir)])
    try:
        run(["chroot", str(rootfs), "apt-get", "update"], env=env, timeout=APT_TIMEOUT_S)
        run(
            ["chroot", str(rootfs), "apt-get", "install", "-y", "--no-install-recommends"]
            + list(packages),
            env=env,
            timeout=APT_TIMEOUT_S,
        )
        run(["chroot", str(rootfs), "apt-get", "clean"], env=env, timeout=120)
        # Layers get one fixed mtime, which makes mtime-stamped .pyc files
        # stale: every container would recompile (and copy up) the stdlib.
        # Hash-based .pyc files stay valid whatever the mtime.
        run(
            ["chroot", str(rootfs), "python3", "-m", "compileall", "-q", "-f",
             "--invalidation-mode", "unchecked-hash",
             "/usr/lib/python3.11", "/usr/lib/python3/dist-packages"],
            env=env, timeout=600, check=False,
        )  # fmt: skip
    finally:
        run(["umount", "-l", str(proc_dir)], check=False)
        policy.unlink(missing_ok=True)


def _tidy(rootfs: Path) -> None:
    """Drop what only the build of the stack needed, and the host's identity
    (debootstrap copies the host's resolv.conf and hostname; containers get
    their own)."""
    for rel in ("var/lib/apt/lists", "var/cache/apt", "var/log", "debootstrap"):
        target = rootfs / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for rel in ("etc/resolv.conf", "etc/hostname"):
        path = rootfs / rel
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text("")
    (rootfs / "etc/hosts").write_text("127.0.0.1 localhost\n")
    # /var/lib/apt/lists/partial is expected by apt.
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def pack_stack(
    spec: StackSpec, cache_dir: Path, log: Callable[[str], None]
) -> tuple[Path, LayerInfo]:
    """The stack's layer blob, packed once (reproducibly: the same root
    filesystem always gives the same digest)."""
    base = stack_dir(spec, cache_dir)
    blob, meta = base / "layer.tar.gz", base / "layer.json"
    if meta.exists() and blob.exists():
        return blob, LayerInfo(**json.loads(meta.read_text()))
    base.mkdir(parents=True, exist_ok=True)
    # Two workers (or test sessions) starting at once: one builds, the
    # other waits and then finds it made.
    with open(base.parent / f".{base.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if meta.exists() and blob.exists():
            return blob, LayerInfo(**json.loads(meta.read_text()))
        rootfs = build_rootfs(spec, cache_dir, log)
        log(f"stack {spec.name}: packing the root filesystem into a layer")
        info = pack_layer(rootfs, blob, from_overlay_upper=False)
        meta.write_text(json.dumps(info.__dict__))
    return blob, info


def stack_created(spec: StackSpec, cache_dir: Path) -> str:
    """When the root filesystem was made: the image's ``created``, fixed for
    a given stack so that pushing it again gives the same digest."""
    marker = stack_dir(spec, cache_dir) / ".complete"
    when = dt.datetime.fromtimestamp(int(marker.stat().st_mtime), dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def publish_stack(
    spec: StackSpec,
    cache_dir: Path,
    client: RegistryClient,
    log: Callable[[str], None],
    *,
    tag: str | None = None,
) -> str:
    """Make (or reuse) the stack and push it as ``stacks/<name>:<tag>`` (the
    date by default); returns the full reference. Blobs the registry already
    has are not uploaded again."""
    blob, info = pack_stack(spec, cache_dir, log)
    repo = f"stacks/{spec.name}"
    tag = tag or today()
    created = stack_created(spec, cache_dir)
    settings = ImageSettings(
        env=dict(spec.env),
        cmd=["/bin/bash"],
        workdir="/",
        labels={"org.opencontainers.image.title": f"stack {spec.name}", "stack.key": spec.key()},
    )
    layer = Layer(info, blob, created_by=f"debootstrap {spec.suite} + {' '.join(spec.packages)}")
    doc = image_config(settings, [layer], created=created, base_history=[])
    digest, _size = push_image(client, repo, [layer], doc, [tag], log)
    log(f"stack {spec.name}: {client.registry}/{repo}:{tag} ({digest})")
    return f"{client.registry}/{repo}:{tag}"


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d")


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="make the stack (and push it)")
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--registry", help="host:port; without it only the layer is made")
    # The one settings helper's rules (NAME_FILE, empty means unset), as everywhere.
    env = Settings(os.environ)
    try:
        username, password = (env.optional(f"PAAS_REGISTRY_{n}") for n in ("USERNAME", "PASSWORD"))
    except SettingError as exc:
        parser.error(exc.message)
    parser.add_argument("--username", default=username)
    parser.add_argument("--password", default=password)
    parser.add_argument("--ca-file")
    args = parser.parse_args()
    if not args.registry:
        blob, info = pack_stack(StackSpec(), args.cache_dir, print)
        print(blob, info.digest, info.size)
        return
    with RegistryClient(
        args.registry, username=args.username, password=args.password, ca_file=args.ca_file
    ) as client:
        print(publish_stack(StackSpec(), args.cache_dir, client, print))


if __name__ == "__main__":
    _main()
