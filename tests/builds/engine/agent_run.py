"""Run a built image the way the platform does: a real runtime agent's
container manager pulls it from the registry by digest, starts it with a
published port on loopback, and the test asks it over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from paas.builds.engine.config import RegistrySettings
from runtime_agent import wire
from runtime_agent.host.cmd import run
from runtime_agent.images.store import ImageStore
from tests.support.agent_harness import AgentUnderTest, unique
from tests.support.processes import free_port

# Straight to the container: a proxy from the environment must not get it.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [p for p in (line.split()[4] for line in f) if p.startswith(root + "/")]


@contextlib.asynccontextmanager
async def served_by_agent(
    registry: RegistrySettings, image_store_dir: Path, digest_ref: str, port: int = 8080
) -> AsyncIterator[str]:
    """Yields the base URL (http://127.0.0.1:<published port>) of the image
    running under a real agent; everything it made is removed after."""
    # A short root: overlay mount options are capped at one page.
    root = Path(tempfile.mkdtemp(prefix="pb-", dir="/tmp"))
    creds = (registry.username or "", registry.password or "")
    images = ImageStore(image_store_dir, lambda host: creds, ca_file=registry.ca_file)
    agent = AgentUnderTest(root, images)
    try:
        await agent.setup()
        manager = await agent.manager()
        host_port = free_port()
        request = wire.parse_create(
            {
                "name": unique("app"),
                "image": digest_ref,
                "env": {"PORT": str(port)},  # as a deploy sets it
                "ports": [{"container_port": port, "host_port": host_port, "host_ip": "127.0.0.1"}],
            }
        )
        await manager.create(request)
        yield f"http://127.0.0.1:{host_port}"
    finally:
        await agent.cleanup()
        images.close()
        for point in sorted(_mounts_under(str(root)), key=len, reverse=True):
            run(["umount", "--lazy", point], check=False)
        if not _mounts_under(str(root)):
            shutil.rmtree(root, ignore_errors=True)


async def get_body(url: str, timeout_s: float = 30.0) -> str:
    """GET ``url``, retried until the app listens (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: Exception | None = None
    while loop.time() < deadline:
        try:
            return await asyncio.to_thread(_get, url)
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"no HTTP answer from {url}: {last}")


def _get(url: str) -> str:
    with _NO_PROXY.open(url, timeout=5) as resp:
        return str(resp.read().decode())


def body_served_by_agent(
    registry: RegistrySettings,
    image_store_dir: Path,
    digest_ref: str,
    path: str = "/",
    port: int = 8080,
) -> str:
    """For synchronous tests: run the image under a real agent (in an event
    loop of its own, $PORT set to ``port``) and return the body of GET ``path``."""

    async def go() -> str:
        async with served_by_agent(registry, image_store_dir, digest_ref, port) as url:
            return await get_body(url + path)

    return asyncio.run(go())
