"""Applying routes to the platform's nginx, and asking how it is doing.

``router_apply`` writes the routes as the next config generation, has nginx
test it (``nginx -t``), swaps ``live`` to it and sends the master SIGHUP: a
graceful reload (new workers take new connections, old ones finish what they
have in flight). It returns once the new workers answer, which the status
socket shows (every config answers ``GET /generation`` with its own
number), and none of the old workers accepts new connections any more.
Applying the routes that are already served does nothing (no reload). A
config nginx refuses is deleted and never becomes live; a reload that
fails after the test (nginx logs an [emerg], or the new generation does not
answer in time) puts ``live`` back to the generation nginx still runs.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from paas.router import master, store
from paas.router.config import RouterConfig
from paas.router.errors import InvalidRoute, RouterError, RouterReloadFailed
from paas.router.nginx import Nginx
from paas.router.routes import Route

log = logging.getLogger("paas.router")


class RouterState(enum.StrEnum):
    RUNNING = "running"  # the master runs and answers with a generation
    STARTING = "starting"  # the master runs but does not answer (yet)
    STOPPED = "stopped"  # no master for this router directory


@dataclass(frozen=True)
class RouterStatus:
    state: RouterState
    pid: int | None
    live_generation: int | None  # the config ``live`` points at
    serving_generation: int | None  # the config nginx's workers answer with
    http_port: int
    https_port: int
    directory: Path

    @property
    def running(self) -> bool:
        return self.state is RouterState.RUNNING


def router_apply(*, routes: Sequence[Route]) -> None:
    """Make nginx serve exactly ``routes`` (raises a RouterError if it cannot;
    then the previous routes go on being served)."""
    routes = list(routes)
    _check_unique(routes)
    config = RouterConfig.from_settings()
    config.make_dirs()
    with store.apply_lock(config):
        if _already_served(config, routes):
            return
        previous = store.live_generation(config)
        generation = _write_tested(config, routes)
        store.swap_live(config, generation)
        pid = master.master_pid(config)
        if pid is None:
            log.warning("router: generation %s is live but nginx is not running", generation)
        else:
            try:
                master.reload(config, pid, generation)
            except RouterReloadFailed:
                if previous is not None:
                    store.swap_live(config, previous)
                raise
            log.info("router: generation %s serving %s routes", generation, len(routes))
        store.prune(config)


@contextlib.contextmanager
def router_lock() -> Iterator[None]:
    """Hold the router for a read-decide-apply sequence: whoever computes
    routes from the database inside it, and commits before leaving it, can
    never be overtaken by a writer that read the state before that commit
    (which would put removed instances back into the router)."""
    config = RouterConfig.from_settings()
    config.make_dirs()
    with store.apply_lock(config):
        yield


def router_status() -> RouterStatus:
    config = RouterConfig.from_settings()
    pid = master.master_pid(config)
    serving = master.serving_generation(config) if pid is not None else None
    if pid is None:
        state = RouterState.STOPPED
    else:
        state = RouterState.RUNNING if serving is not None else RouterState.STARTING
    return RouterStatus(
        state=state,
        pid=pid,
        live_generation=store.live_generation(config),
        serving_generation=serving,
        http_port=config.http_port,
        https_port=config.https_port,
        directory=config.directory,
    )


def router_prepare() -> list[str]:
    """Before nginx starts: render the live routes again with today's
    settings (ports may have changed) as a new tested generation, and return
    the argv that runs nginx on it in the foreground."""
    config = RouterConfig.from_settings()
    config.make_dirs()
    pid = master.master_pid(config)
    if pid is not None:
        raise RouterError(f"The router in {config.directory} already runs (nginx pid {pid}).")
    with store.apply_lock(config):
        try:
            routes = store.live_routes(config)
        except (OSError, ValueError, KeyError, TypeError, RouterError) as exc:
            log.warning("router: the live routes cannot be read (%s); starting with none", exc)
            routes = []
        store.swap_live(config, _write_tested(config, routes))
        store.prune(config)
    # nginx refuses to bind a unix socket whose file is left from a crash.
    config.status_socket.unlink(missing_ok=True)
    return Nginx(config).serve_argv(config.live_conf)


def _already_served(config: RouterConfig, routes: list[Route]) -> bool:
    """The same routes as the live generation, which nginx serves (or would
    serve when it starts): nothing to do. A periodic reconcile then costs no
    reload, so clients' keep-alive connections are left alone."""
    if store.live_digest(config) != store.routes_digest(config, routes):
        return False
    pid = master.master_pid(config)
    return pid is None or master.serving_generation(config) == store.live_generation(config)


def _check_unique(routes: list[Route]) -> None:
    seen: dict[str, str] = {}
    for route in routes:
        if not isinstance(route, Route):
            raise InvalidRoute("router_apply takes Route values.")
        for name in route.hostnames:
            if name in seen:
                raise InvalidRoute(
                    f"{name} is routed twice (to {seen[name]} and to {route.app}).",
                    hostname=name,
                )
            seen[name] = route.app


def _write_tested(config: RouterConfig, routes: list[Route]) -> int:
    generation, directory = store.write_generation(config, routes)
    try:
        Nginx(config).test(directory / "nginx.conf")
    except BaseException:
        store.discard_generation(config, generation)
        raise
    return generation
