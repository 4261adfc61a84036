"""Fixtures shared by the agent's tests: a real registry, a tiny busybox
image pushed to it, and a short-pathed scratch agent root."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.cmd import run
from runtime_agent.host.libc import set_child_subreaper
from tests.support.agent_harness import AgentUnderTest, LocalImages
from tests.support.images import BuiltImage, build_busybox_image
from tests.support.registry import TestRegistry, run_registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestRegistry]:
    """A real docker-registry (TLS + htpasswd basic auth) for the session."""
    with run_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def busybox_image(registry: TestRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The two-layer busybox httpd image, pushed once per session."""
    return build_busybox_image(registry, tmp_path_factory.mktemp("busybox-image"))


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == root or p.startswith(root + "/")]


@pytest.fixture
def tmp_agent_root() -> Iterator[Path]:
    """A fresh agent data root with a SHORT path (/tmp/pa-XXXXXXXX): overlay
    mount options are capped at one page, and every lowerdir repeats it.
    Anything left mounted under it is unmounted before it is removed, so a
    failed test never makes rmtree walk into a mounted rootfs."""
    root = tempfile.mkdtemp(prefix="pa-", dir="/tmp")
    # Traversable (not listable), as an agent root's parents must be: runc
    # resolves each rootfs as the container's unprivileged host uid.
    os.chmod(root, 0o711)
    try:
        yield Path(root)
    finally:
        for point in sorted(_mounts_under(root), key=len, reverse=True):
            run(["umount", "--lazy", point], check=False)
        if not _mounts_under(root):
            shutil.rmtree(root, ignore_errors=True)
        else:  # never delete through a mount
            os.sync()


@pytest.fixture(autouse=True)
def _not_a_subreaper_after_the_test() -> Iterator[None]:
    """A ContainerManager made in this process makes it a child subreaper
    (that is how the agent learns exit codes); undo it after every test so a
    later test sees orphans go to init as on a normal host."""
    yield
    set_child_subreaper(False)


@pytest.fixture
async def agent(tmp_agent_root: Path, tmp_path: Path) -> AsyncIterator[AgentUnderTest]:
    """A container manager on a fresh root, its network and runc state
    removed afterwards (tests/support/agent_harness.py)."""
    a = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"))
    try:
        yield await a.setup()
    finally:
        await a.cleanup()


@pytest.fixture
async def manager(agent: AgentUnderTest) -> ContainerManager:
    return await agent.manager()
