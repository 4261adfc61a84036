"""A real agent process and a tiny busybox image for the follower's tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent_harness import AgentProcess, cleanup
from tests.support.images import BuiltImage, build_busybox_image
from tests.support.registry import TestRegistry


@pytest.fixture(scope="session")
def busybox_image(registry: TestRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return build_busybox_image(registry, tmp_path_factory.mktemp("busybox-image"))


@pytest.fixture
def agent(registry: TestRegistry) -> Iterator[AgentProcess]:
    """``python -m runtime_agent`` on a short root (overlay options are capped
    at a page), its own port, bridge, subnet and nft table; removed after."""
    root = Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))
    root.chmod(0o711)  # containers run as unprivileged ids; runc finds their rootfs as them
    proc = AgentProcess.fresh(
        root / "agent",
        PAAS_AGENT_REGISTRY=registry.host,
        PAAS_AGENT_REGISTRY_USER=registry.username or "",
        PAAS_AGENT_REGISTRY_PASSWORD=registry.password or "",
        PAAS_AGENT_REGISTRY_CA=str(registry.ca_file or ""),
    )
    try:
        proc.start()
        yield proc
    finally:
        cleanup(proc)
        link = root / "agent"  # to the real root, which cleanup removed
        if link.is_symlink() and not link.exists():
            link.unlink()
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
