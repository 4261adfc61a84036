"""Applying routes to the platform's nginx, and asking how it is doing.

``router_apply`` writes the routes as the next config generation, has nginx
test it (``nginx -t``), swaps ``live`` to it and sends the master SIGHUP: a
graceful reload (new workers take new connections, old ones finish what they
have in flight). It returns once the new workers answer, which the status
socket shows (every config answers ``GET /generation`` with its own
number), and none of the old workers accepts new connections any more.
A config nginx refuses is deleted and never becomes live; a reload that
fails after the test (nginx logs an [emerg], or the new generation does not
answer in time) puts ``live`` back to the generation nginx still runs.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from paas.router import store
from paas.router.config import RouterConfig
from paas.router.errors import InvalidRoute, RouterError, RouterReloadFailed
from paas.router.nginx import Nginx
from paas.router.routes import Route

log = logging.getLogger("paas.router")
POLL_S = 0.01
STATUS_TIMEOUT_S = 2.0


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
        previous = store.live_generation(config)
        generation = _write_tested(config, routes)
        store.swap_live(config, generation)
        pid = _master_pid(config)
        if pid is None:
            log.warning("router: generation %s is live but nginx is not running", generation)
        else:
            try:
                _reload(config, pid, generation)
            except RouterReloadFailed:
                if previous is not None:
                    store.swap_live(config, previous)
                raise
            log.info("router: generation %s serving %s routes", generation, len(routes))
        store.prune(config)


def router_status() -> RouterStatus:
    config = RouterConfig.from_settings()
    pid = _master_pid(config)
    serving = _serving_generation(config) if pid is not None else None
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
    pid = _master_pid(config)
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


def _master_pid(config: RouterConfig) -> int | None:
    """The pid of this directory's nginx master, if it runs. The pid file
    alone could name a reused pid: the command line must name our config."""
    try:
        pid = int(config.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    text = cmdline.replace(b"\0", b" ").decode(errors="replace")
    if "nginx: master process" in text and str(config.live_conf) in text:
        return pid
    return None


def _serving_generation(config: RouterConfig) -> int | None:
    """Ask the status socket which generation answers new connections."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(STATUS_TIMEOUT_S)
            sock.connect(str(config.status_socket))
            sock.sendall(b"GET /generation HTTP/1.0\r\nHost: router\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or not body.strip().isdigit():
        return None
    return int(body)


def _accepting_workers(master: int) -> set[int]:
    """The master's workers that still accept connections. A worker told to
    quit renames itself "... is shutting down" and closes its listening
    sockets in the same step of its event loop, so it never accepts again."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return set()
    accepting = set()
    for child in children:
        try:
            title = Path(f"/proc/{child}/cmdline").read_bytes().rstrip(b"\0")
        except OSError:
            continue  # it has just exited
        if title == b"nginx: worker process":
            accepting.add(int(child))
    return accepting


def _reload(config: RouterConfig, pid: int, generation: int) -> None:
    """SIGHUP, then wait until the new generation answers and none of the
    workers that ran before still accepts: after that, every new connection
    gets the new config."""
    log_size = _size(config.error_log)
    old_workers = _accepting_workers(pid)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + config.reload_timeout
    while _serving_generation(config) != generation or _accepting_workers(pid) & old_workers:
        emerg = _new_emergencies(config.error_log, log_size)
        if emerg:
            raise RouterReloadFailed(f"nginx did not load the new router config: {emerg}")
        if _master_pid(config) is None:
            raise RouterReloadFailed("nginx stopped while reloading the router config.")
        if time.monotonic() > deadline:
            raise RouterReloadFailed(
                f"nginx did not serve the new router config within {config.reload_timeout} s "
                f"(see {config.error_log})."
            )
        time.sleep(POLL_S)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _new_emergencies(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read(64 * 1024).decode(errors="replace")
    except OSError:
        return ""
    return "; ".join(line for line in text.splitlines() if "[emerg]" in line)[-2000:]
