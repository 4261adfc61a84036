"""``python -m runtime_agent``: the agent daemon (one per host, as root).

Start: configuration from the environment, prove runc is not vulnerable to
the known escape, set up the host network, re-adopt the containers a
previous agent left running, then serve the API.

Stop (SIGTERM or SIGINT): close the listening socket, let requests in
flight finish within the drain timeout, stop the manager's tasks and exit.
Containers are never touched: they keep running, their logs keep going to
files, and the next agent re-adopts them.

Exit codes: 0 after a clean stop, 2 for a configuration error, 1 when the
agent cannot start (unsafe runc, network setup, port in use...).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import resource
import signal
import sys
import time

from runtime_agent.api import router_sources as router_sources_api
from runtime_agent.api.server import ApiServer, create_app
from runtime_agent.api.tls import certificate_fingerprint, certificate_paths, server_context
from runtime_agent.config import PREFIX, AgentConfig, ConfigError
from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.errors import HostError
from runtime_agent.host.settings import Settings
from runtime_agent.images.store import ImageStore
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci.runc import Runc, check_runtime_safe
from runtime_agent.router_sources import RouterSourcesKeeper

log = logging.getLogger("runtime_agent")

EXIT_OK, EXIT_CANNOT_START, EXIT_CONFIG = 0, 1, 2


def setup_logging(level_name: str | None) -> None:
    """Timestamped lines on stderr (UTC, so logs from several hosts line up)."""
    level = logging.getLevelName((level_name or "INFO").upper())
    if not isinstance(level, int):
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


async def serve(config: AgentConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop)

    for d in (config.root, config.containers_dir, config.runc_root, config.net_dir):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Before touching the host: a certificate that does not load stops the agent.
    cert, key = certificate_paths(config.root, config.tls_cert, config.tls_key)
    tls = server_context(cert, key)
    runc = Runc(config.runc_root, config.runc_binary)
    await asyncio.to_thread(check_runtime_safe, runc, config.root)
    network = HostNetwork(
        config.net_dir,
        config.bridge,
        config.subnet,
        config.nft_table,
        policy=config.policy_settings(),
    )
    await asyncio.to_thread(network.setup)
    images = ImageStore(
        config.root,
        credentials=config.registry_credentials,
        ca_file=str(config.registry_ca) if config.registry_ca else None,
        layer_limits=config.unpack_limits(),
    )
    manager = ContainerManager(config, images, network, runc)
    await manager.start()
    app = create_app(manager, images, config)
    keeper = RouterSourcesKeeper(config.root, config.router_sources, network.set_router_sources,
                                 pinned_by_setting=config.router_sources_pinned)  # fmt: skip
    app.add_routes(router_sources_api.routes(keeper))
    server = ApiServer(
        app,
        config.listen_host,
        config.listen_port,
        config.drain_timeout_s,
        tls=tls,
    )
    try:
        await server.start()
        log.info("agent ready (pid %d, root %s, certificate fingerprint %s)",
                 os.getpid(), config.root, certificate_fingerprint(cert))  # fmt: skip
        _log_router_sources(config)
        await stop.wait()
    finally:
        await server.stop()
        await manager.shutdown()
    log.info("agent stopped; containers left running")
    return EXIT_OK


def _log_router_sources(config: AgentConfig) -> None:
    """Say who this host's route ports answer, and warn when it is no one
    on a host the router reaches over the network."""
    if config.router_sources:
        log.info("route ports answer %s only", ", ".join(map(str, config.router_sources)))
    elif not _is_loopback(config.listen_host):
        log.warning("no router sources (PAAS_AGENT_ROUTER_SOURCES, the join, or the control "
                    "plane's push): route ports answer no one from outside until then")  # fmt: skip


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if stop.is_set():
        log.warning("%s again: already stopping", sig.name)
        return
    log.info("%s: draining the API, leaving containers running", sig.name)
    stop.set()


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one (what any process may do).

    Each container keeps fds open in the agent (its raw stdout and stderr,
    log.jsonl, offsets.json; a follow's history holds its files too), so a
    few hundred containers pass 1024, the soft limit systemd and most
    shells start with, and the agent would fail with EMFILE. The containers
    get the hard limit from their spec (oci/spec.py), not this one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("open files limit raised from %d to %d", soft, hard)


def main() -> int:
    setup_logging(None)
    raise_open_files_limit()
    try:
        setup_logging(Settings(os.environ, PREFIX).log_level("LOG_LEVEL"))
        config = AgentConfig.from_env()
    except ConfigError as exc:
        log.error("configuration error: %s", exc.message)
        return EXIT_CONFIG
    try:
        return asyncio.run(serve(config))
    except HostError as exc:
        log.error("cannot start: %s", exc.message)
        return EXIT_CANNOT_START
    except OSError as exc:  # most often: the listen address is taken
        log.error("cannot start: %s", exc)
        return EXIT_CANNOT_START


if __name__ == "__main__":
    sys.exit(main())
