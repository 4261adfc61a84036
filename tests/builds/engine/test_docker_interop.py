"""Interoperability: Docker itself pulls an image we built from our registry
and runs it (issue 4). scripts/test installs docker.io; a machine without
dockerd fails this test rather than skipping it.

dockerd is started by PID with its own data-root, exec-root and socket in a
temporary directory, no iptables and no bridge (the container uses the host
network and listens on a free loopback port), and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.builds.engine.build import build_image
from runtime_agent.host.cmd import run
from tests.builds.engine.support import http_get, mounts_under
from tests.support.processes import free_port, start_process, stop_process, wait_until

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
pytestmark = [pytest.mark.root, pytest.mark.docker]


def ensure_docker() -> None:
    assert Path(DOCKERD).exists() and Path(DOCKER).exists(), (
        "dockerd is not installed: scripts/test installs docker.io"
    )


@contextlib.contextmanager
def running_dockerd(base: Path, insecure_registry: str) -> Iterator[list[str]]:
    """Yields the docker client argv prefix for this daemon."""
    sock = base / "docker.sock"
    log = open(base / "dockerd.log", "wb")  # noqa: SIM115 - closed in finally
    proc = start_process(
        [
            DOCKERD, "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
            "--pidfile", str(base / "docker.pid"), "--host", f"unix://{sock}",
            "--iptables=false", "--ip-masq=false", "--bridge=none", "--userland-proxy=false",
            "--exec-opt", "native.cgroupdriver=cgroupfs",
            "--insecure-registry", insecure_registry,
        ],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    client = [DOCKER, "--host", f"unix://{sock}"]
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError((base / "dockerd.log").read_text(errors="replace")[-3000:])
            return run([*client, "version"], check=False).returncode == 0

        wait_until(answers, timeout_s=60, what="dockerd")
        yield client
    finally:
        stop_process(proc, grace_s=30)
        log.close()
        for mount in reversed(mounts_under(base)):
            run(["umount", "-l", mount], check=False)


def test_docker_pulls_and_runs_an_image_we_built(engine_config, sample, registry):
    ensure_docker()
    app = f"interop-{uuid.uuid4().hex[:6]}"
    result = build_image(
        source_dir=sample("python-nodeps"), app=app, build_id="b", version=1,
        config=engine_config, log=lambda line: None,
    )  # fmt: skip
    base = Path(f"/tmp/paas-docker-{uuid.uuid4().hex[:8]}")
    base.mkdir()
    env = {**os.environ, "DOCKER_CONFIG": str(base / "client")}
    try:
        with running_dockerd(base, registry.host) as docker:
            run(
                [*docker, "login", registry.host, "-u", registry.username, "--password-stdin"],
                input=registry.password.encode(), env=env, timeout=60,
            )  # fmt: skip
            run([*docker, "pull", result.digest_ref], env=env, timeout=300)
            port = free_port()
            name = f"paas-interop-{uuid.uuid4().hex[:6]}"
            run(
                [*docker, "run", "-d", "--name", name, "--network", "host",
                 "-e", f"PORT={port}", result.digest_ref],
                env=env, timeout=120,
            )  # fmt: skip
            try:
                assert http_get("127.0.0.1", port, timeout_s=60) == "hello from python-nodeps"
            finally:
                run([*docker, "rm", "-f", name], env=env, check=False, timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
