"""The generations on disk: writing one, swapping ``live`` to it, reading
which is live, and dropping old ones. Only :mod:`paas.router.services` calls
this, holding the apply lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from paas.router.config import RouterConfig
from paas.router.render import cert_paths, render_config
from paas.router.routes import Route, TlsCert, Upstream

KEEP_GENERATIONS = 5


_held = threading.local()  # lock files this thread holds, with their depth


@contextlib.contextmanager
def apply_lock(config: RouterConfig) -> Iterator[None]:
    """One writer at a time (web, workers and beat may all apply).

    Re-entrant within a thread: a caller may hold it across reading the
    desired routes, applying them and committing the transaction they came
    from, while ``router_apply`` inside takes it again (a second flock on a
    new descriptor would wait for ourselves)."""
    key = str(config.lock_file)
    depth: dict[str, int] = _held.__dict__.setdefault("depth", {})
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    fd = os.open(config.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        depth[key] = 1
        try:
            yield
        finally:
            depth[key] = 0
    finally:
        os.close(fd)


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def generations(config: RouterConfig) -> list[int]:
    if not config.generations.is_dir():
        return []
    return sorted(int(p.name) for p in config.generations.iterdir() if p.name.isdigit())


def live_generation(config: RouterConfig) -> int | None:
    try:
        target = os.readlink(config.live)
    except OSError:
        return None
    name = Path(target).name
    return int(name) if name.isdigit() else None


def routes_digest(config: RouterConfig, routes: Sequence[Route]) -> str:
    """Equal for two applies that would render the same config."""
    text = json.dumps([_route_json(r) for r in routes]) + repr(config)
    return hashlib.sha256(text.encode()).hexdigest()


def live_digest(config: RouterConfig) -> str | None:
    try:
        return (config.live / "digest").read_text().strip()
    except OSError:
        return None


def write_generation(config: RouterConfig, routes: Sequence[Route]) -> tuple[int, Path]:
    """Write the next generation's files; the caller tests and swaps it."""
    existing = generations(config)
    generation = (existing[-1] if existing else 0) + 1
    directory = config.generation_dir(generation)
    directory.mkdir(mode=0o755)
    certs = directory / "certs"
    certs.mkdir(mode=0o700)
    tls = {r.tls.fingerprint: r.tls for r in routes if r.tls is not None}
    for cert in tls.values():
        crt, key = cert_paths(directory, cert.fingerprint)
        _write(crt, cert.cert_pem, 0o600)
        _write(key, cert.key_pem, 0o600)
    _write(directory / "routes.json", json.dumps([_route_json(r) for r in routes]), 0o600)
    _write(directory / "digest", routes_digest(config, routes), 0o644)
    conf = render_config(
        config=config, routes=routes, generation=generation, generation_dir=directory
    )
    _write(directory / "nginx.conf", conf, 0o644)
    return generation, directory


def discard_generation(config: RouterConfig, generation: int) -> None:
    shutil.rmtree(config.generation_dir(generation), ignore_errors=True)


def swap_live(config: RouterConfig, generation: int) -> None:
    """Point ``live`` at ``generation`` in one rename (never a moment without it)."""
    tmp = config.directory / f".live-{generation}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(Path("generations") / config.generation_dir(generation).name, tmp)
    os.replace(tmp, config.live)


def prune(config: RouterConfig) -> None:
    live = live_generation(config)
    for generation in generations(config)[:-KEEP_GENERATIONS]:
        if generation != live:
            discard_generation(config, generation)


def live_routes(config: RouterConfig) -> list[Route]:
    """The Routes of the live generation (empty if there is none)."""
    if live_generation(config) is None:
        return []
    data = json.loads((config.live / "routes.json").read_text())
    return [_route_from_json(item) for item in data]


def _route_json(route: Route) -> dict[str, Any]:
    tls = route.tls
    return {
        "app": route.app,
        "hostnames": list(route.hostnames),
        "upstreams": [[u.address, u.port] for u in route.upstreams],
        "tls": None
        if tls is None
        else {
            "cert_pem": tls.cert_pem,
            "key_pem": tls.key_pem,
            "names": list(tls.names),
            "not_after": tls.not_after.isoformat(),
            "fingerprint": tls.fingerprint,
        },
    }


def _route_from_json(item: dict[str, Any]) -> Route:
    tls = item["tls"]
    return Route(
        app=item["app"],
        hostnames=tuple(item["hostnames"]),
        upstreams=tuple(Upstream(address, port) for address, port in item["upstreams"]),
        tls=None
        if tls is None
        else TlsCert(
            cert_pem=tls["cert_pem"],
            key_pem=tls["key_pem"],
            names=tuple(tls["names"]),
            not_after=datetime.fromisoformat(tls["not_after"]),
            fingerprint=tls["fingerprint"],
        ),
    )
