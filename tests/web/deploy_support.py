"""Shared parts of the deploy tests: a real agent process that pulls from the
test registry, nginx as the router, the hello-world sample, and waits."""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import shutil
import tarfile
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from bench.support.http_load import LoadResult, Response, run_load
from paas.applications.models import Release, ReleaseState
from paas.builds.models import Build
from paas.hosts.models import Host
from paas.hosts.services import host_heartbeat
from tests.support.agent_harness import AgentProcess
from tests.support.processes import wait_until
from tests.support.registry import TestRegistry

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "hello-world"


def sample_archive(directory: Path = SAMPLE, extra: dict[str, bytes] | None = None) -> bytes:
    """The sample as a .tar.gz, with ``extra`` files added."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@contextlib.contextmanager
def agent_root() -> Iterator[Path]:
    """A short, traversable (0711, not listable) directory for an agent's root:
    with user namespaces runc resolves each rootfs as the container's
    unprivileged host uid, so every parent must let it pass."""
    root = Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))
    os.chmod(root, 0o711)
    try:
        yield root / "agent"
    finally:
        shutil.rmtree(root, ignore_errors=True)  # cleanup() unmounted what was there


def agent_for(registry: TestRegistry, root: Path) -> AgentProcess:
    """An agent that trusts the registry's CA and holds NO credential of it:
    it pulls with the token the control plane sends with each create."""
    return AgentProcess.fresh(
        root,
        PAAS_AGENT_REGISTRY_CA=str(registry.ca_file or ""),
        PAAS_AGENT_STOP_GRACE_S="2",
    )


REGISTRY_SETTINGS = (
    "PAAS_REGISTRY", "PAAS_REGISTRY_USER", "PAAS_REGISTRY_PASSWORD", "PAAS_REGISTRY_CA",
    "PAAS_REGISTRY_TOKEN_KEY", "PAAS_REGISTRY_TOKEN_CERT",
)  # fmt: skip


def use_registry_settings(settings: Any, build_env: dict[str, str]) -> None:
    """This process talks to the registry (and mints pull tokens, e.g. in a
    reconcile run here) like the worker does."""
    for name in REGISTRY_SETTINGS:
        setattr(settings, name, build_env[name])


def add_host(agent: AgentProcess, name: str = "local") -> Host:
    """The agent as a ready host (the join flow has its own test)."""
    host = Host.objects.create(
        name=name, agent_url=agent.url, token=agent.token, tls_fingerprint=agent.fingerprint
    )
    host_heartbeat(host_id=host.pk)
    host.refresh_from_db()
    return host


def wait_for(check: Callable[[], Any], timeout_s: float = 60, what: str = "") -> Any:
    """:func:`wait_until` with this module's positional arguments."""
    return wait_until(check, timeout_s=timeout_s, what=what or str(check), poll_s=0.1)


def wait_build_final(build: Build, timeout_s: float = 240) -> Build:
    """``build`` once it succeeded or failed, refreshed from the database."""

    def final() -> Build | None:
        build.refresh_from_db()
        return build if build.is_final else None

    found: Build = wait_for(final, timeout_s, f"build {build.pk} to finish")
    return found


def upload(client: Any, user: Any, app: str, extra: dict[str, bytes] | None = None) -> Build:
    client.force_login(user)
    response = client.post(
        f"/apps/{app}/builds",
        {"source": SimpleUploadedFile("hello.tar.gz", sample_archive(extra=extra))},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.content
    return Build.objects.get(pk=response.json()["build"])


def release_settled(app: str, number: int) -> Release | None:
    """The release once its deploy ended (current, failed or retired)."""
    release = Release.objects.filter(app__name=app, number=number).first()
    if release and release.state not in (ReleaseState.PENDING, ReleaseState.DEPLOYING):
        return release
    return None


def wait_release(app: str, number: int, timeout_s: float = 120) -> Release:
    release: Release = wait_for(
        lambda: release_settled(app, number), timeout_s, f"{app} v{number} to settle"
    )
    return release


def get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def container_names(agent: AgentProcess) -> list[str]:
    status, body = agent.request("GET", "/v1/containers")
    assert status == 200, body
    return sorted(c["name"] for c in body["containers"])


class BackgroundLoad:
    """The bounded load client (bench/support/http_load.py) through the
    router on a thread, counting the bodies it got; ``report`` once stopped."""

    workers = 2  # keep-alive clients, so at most this many requests in flight

    def __init__(self, port: int, host: str, duration_s: float) -> None:
        self.bodies: Counter[str] = Counter()
        self._stop = threading.Event()
        self._outcome: list[LoadResult] = []
        self._thread = threading.Thread(
            target=lambda: self._outcome.append(
                run_load(host="127.0.0.1", port=port, host_header=host, workers=self.workers,
                         duration_s=duration_s, stop=self._stop, on_response=self._count)
            ),
            daemon=True,
        )  # fmt: skip

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _count(self, response: Response) -> None:
        self.bodies[response.body.decode(errors="replace").strip()] += 1

    @property
    def report(self) -> LoadResult:
        (result,) = self._outcome
        return result


@contextlib.contextmanager
def background_load(port: int, host: str, *, duration_s: float) -> Iterator[BackgroundLoad]:
    load = BackgroundLoad(port, host, duration_s)
    load.start()
    try:
        yield load
    finally:
        load.stop()
