"""Benchmark of the deploy path (issue 10): wall time from the upload
request to the first 200 through the router, for the hello-world sample.

Each run creates a new app, uploads tests/samples/hello-world through the
app page's upload view (the same request the browser sends), and polls
``GET /`` with ``Host: <app>.localhost`` through nginx every 5 ms until it
answers 200. In between: the Celery worker unpacks and builds the image
(stack warm), pushes it, makes release v1, the deploy task asks the agent to
create the container (image layers already in the agent's store but for the
app layer), health-checks it on $PORT and reloads nginx.

One untimed warm-up run first: it makes the agent pull and unpack the stack
layer (hundreds of MB, once per host). Figure: p50 over 5 runs; goal <= 1 s.

Self-contained: starts its own Redis, registry (TLS, token auth, as
``manage.py setup_registry`` makes it), agent, nginx and Celery worker on a
throwaway SQLite database, and removes them; the helpers are
bench/support's, none of the tests'. Run as root after scripts/test has made
the stack: ``.venv/bin/python bench/deploy.py``. The last line printed is
one JSON object.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import secrets
import shutil
import socket
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `paas` and `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.support.harness import (  # noqa: E402
    AgentDaemon,
    free_port,
    registry,
    start,
    stop,
    wait_until,
)
from paas.builds.registry_server import RegistrySetup  # noqa: E402
from runtime_agent.net.bridge import HostNetwork  # noqa: E402

RUNS = 5
GOALS = {"upload_to_first_200_p50_s": 1.0}
SAMPLE = ROOT / "tests" / "samples" / "hello-world"  # the sample app (data, not a helper)
# The stack's root filesystem, made once per machine by scripts/test.
STACK_CACHE = Path(os.environ.get("PAAS_BUILD_TEST_CACHE", "/var/cache/paas-build-test"))


# --- the services around the control plane -----------------------------------------


@contextlib.contextmanager
def redis(workdir: Path) -> Iterator[str]:
    """A redis-server on a free loopback port, no persistence."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "no"]  # fmt: skip
    proc = start(argv, workdir / "redis.log")

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "redis.log").read_text(errors="replace")[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_until(answers, 10, f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


def platform_env(workdir: Path, setup: RegistrySetup, redis_url: str) -> dict[str, str]:
    """What this process and the worker read: the registry (the worker mints
    its own tokens with the key), a build network of this run, the router."""
    run_id = secrets.token_hex(3)
    subnet = IPv4Network(f"10.{100 + secrets.randbelow(100)}.{secrets.randbelow(256)}.0/24")
    return {
        "DJANGO_SETTINGS_MODULE": "paas.settings",
        "PAAS_DATA_DIR": str(workdir / "data"),
        "PAAS_DRAIN_SECONDS": "1",
        "REDIS_URL": redis_url,
        "PAAS_REGISTRY": setup.host,
        "PAAS_REGISTRY_CA": setup.ca_file,
        "PAAS_REGISTRY_TOKEN_KEY": setup.token_key,
        "PAAS_REGISTRY_TOKEN_CERT": setup.token_cert,
        "PAAS_BUILD_CACHE_DIR": str(STACK_CACHE),
        "PAAS_BUILD_BRIDGE": f"pd{run_id}",
        "PAAS_BUILD_SUBNET": str(subnet),
        "PAAS_BUILD_NFT_TABLE": f"paasdeploy_{run_id}",
        "PAAS_BUILD_DIR": str(workdir / "builds"),
        "PAAS_ROUTER_DIR": str(workdir / "router"),
        "PAAS_ROUTER_PORT": str(free_port()),
        "PAAS_ROUTER_HTTPS_PORT": str(free_port()),
        "PAAS_ROUTER_LISTEN": "127.0.0.1",
        "PAAS_ROUTER_WORKERS": "2",
    }


def remove_build_network(env: dict[str, str]) -> None:
    """The engine set the build network up on the first build."""
    subnet = IPv4Network(env["PAAS_BUILD_SUBNET"])
    net_dir = Path(env["PAAS_BUILD_DIR"]) / "net"
    HostNetwork(net_dir, env["PAAS_BUILD_BRIDGE"], subnet, env["PAAS_BUILD_NFT_TABLE"]).teardown()


@contextlib.contextmanager
def router(workdir: Path) -> Iterator[int]:
    """The platform's nginx, as ``manage.py router_serve`` would run it."""
    from django.conf import settings

    from paas.router.services import router_prepare, router_status

    argv = router_prepare()
    proc = start(argv, workdir / "nginx.out", start_new_session=True)

    def running() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("the router's nginx did not start; see its error.log")
        return router_status().running

    try:
        wait_until(running, 20, "the router's nginx")
        yield int(settings.PAAS_ROUTER_PORT)
    finally:
        stop(proc, grace_s=15)


@contextlib.contextmanager
def celery_worker(workdir: Path) -> Iterator[None]:
    """A real worker with this process's environment (and so its database)."""
    log = workdir / "worker.log"
    argv = [sys.executable, "-m", "celery", "-A", "paas", "worker", "--pool", "solo",
            "--loglevel", "INFO", "--without-heartbeat", "--without-gossip",
            "--without-mingle"]  # fmt: skip
    proc = start(argv, log, cwd=ROOT)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace")[-3000:])
        return b"ready." in log.read_bytes()

    try:
        wait_until(ready, 90, "the celery worker")
        yield
    finally:
        stop(proc)


# --- the runs ------------------------------------------------------------------------


def sample_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(SAMPLE.iterdir()):
            tar.add(path, arcname=path.name)
    return buf.getvalue()


def get(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def first_200(port: int, host: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if get(port, host) == 200:
                return
        time.sleep(0.005)
    raise RuntimeError(f"{host} did not answer 200 within {timeout_s} s")


def one_run(client: Any, user: Any, port: int, name: str, archive: bytes) -> float:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from paas.applications.services import app_create

    app_create(user=user, team=user.personal_team, name=name)
    client.force_login(user)
    started = time.monotonic()
    response = client.post(
        f"/apps/{name}/builds",
        {"source": SimpleUploadedFile("hello.tar.gz", archive)},
        HTTP_ACCEPT="application/json",
    )
    if response.status_code != 201:
        raise RuntimeError(f"the upload was refused: {response.content!r}")
    first_200(port, f"{name}.localhost")
    return time.monotonic() - started


def add_host(agent: AgentDaemon) -> None:
    """The agent as a ready host (the join flow has its own test)."""
    from paas.hosts.models import Host
    from paas.hosts.services import host_heartbeat

    host = Host.objects.create(
        name="local",
        agent_url=f"https://127.0.0.1:{agent.port}",
        token=agent.token,
        tls_fingerprint=agent.fingerprint,
    )
    host_heartbeat(host_id=host.pk)


def measure(workdir: Path, agent: AgentDaemon) -> dict[str, Any]:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    user = User.objects.create_user(username="bench", password=secrets.token_urlsafe(12))
    add_host(agent)
    client = Client(HTTP_HOST="127.0.0.1")
    archive = sample_archive()
    with router(workdir) as port, celery_worker(workdir):
        warm = one_run(client, user, port, "warm", archive)
        times = [one_run(client, user, port, f"bench{i}", archive) for i in range(RUNS)]
    return {
        "upload_to_first_200_p50_s": round(statistics.median(times), 3),
        "runs_s": [round(t, 3) for t in times],
        "warm_up_with_stack_pull_s": round(warm, 3),
    }


def main() -> int:
    if os.geteuid() != 0:
        print("bench/deploy.py needs root (runc, netns, nginx)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="paas-bench-deploy-"))
    workdir.chmod(0o711)  # the agent's root must be traversable (user namespaces)
    with redis(workdir / "redis") as redis_url, registry(workdir / "registry") as setup:
        env = platform_env(workdir, setup, redis_url)
        os.environ.update(env)
        agent = AgentDaemon(
            workdir / "agent",
            env={"PAAS_AGENT_REGISTRY_CA": setup.ca_file, "PAAS_AGENT_STOP_GRACE_S": "2"},
        )
        try:
            agent.start()
            figures = measure(workdir, agent)
        finally:
            agent.cleanup()
            remove_build_network(env)
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)
    ok = all(figures[name] <= goal for name, goal in GOALS.items())
    print(json.dumps({"bench": "deploy", "figures": figures, "goals": GOALS, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
