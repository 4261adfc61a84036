"""A real ContainerManager for tests: its own data root, bridge, subnet and
nft table (random names, so concurrent runs never meet), real runc, real
overlay, real network. :meth:`AgentUnderTest.cleanup` removes everything it
made even when the test failed half-way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from runtime_agent import wire
from runtime_agent.config import AgentConfig
from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.errors import AgentError
from runtime_agent.host.libc import set_child_subreaper
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci import overlay
from runtime_agent.oci.runc import Runc
from runtime_agent.wire import ContainerState
from tests.support.rootfs import make_busybox_rootfs


@dataclass(frozen=True)
class LocalImage:
    digest: str
    config: dict[str, Any]


class LocalImages:
    """An image store holding one image: a busybox rootfs as its only layer.

    Stands in for the registry-backed ImageStore (tested on its own) where a
    test is about containers, not pulls: same two calls, real directories."""

    def __init__(self, workdir: Path, *, layer: Path | None = None, digest: str = "") -> None:
        self.layer = layer or make_busybox_rootfs(workdir / "layer")
        self.image = LocalImage(
            digest=digest or "sha256:" + secrets.token_hex(32),
            config={"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"}},
        )
        self.pulls: list[str] = []

    def pull(self, ref: str, *, refresh: bool = True) -> LocalImage:
        self.pulls.append(ref)
        return self.image

    def lower_dirs(self, image: LocalImage) -> list[Path]:
        return [self.layer]


def random_subnet() -> IPv4Network:
    # 10.150-199.x: apart from the network module's tests (10.200-255.x).
    return IPv4Network(f"10.{150 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24")


class AgentUnderTest:
    def __init__(self, root: Path, images: Any, **config: Any) -> None:
        self.root = root
        suffix = secrets.token_hex(3)
        defaults: dict[str, Any] = {
            "root": root,
            "token": secrets.token_urlsafe(24),
            "bridge": f"pc{suffix}",
            "subnet": random_subnet(),
            "nft_table": f"pc_{suffix}",
            "backoff_base_s": 0.2,
            "backoff_cap_s": 1.6,
            "backoff_reset_s": 600.0,
            "stop_grace_s": 2.0,
        }
        defaults.update(config)
        self.config = AgentConfig(**defaults)
        self.images = images
        self.runc = Runc(self.config.runc_root)
        self.network = HostNetwork(
            self.config.net_dir, self.config.bridge, self.config.subnet, self.config.nft_table
        )
        self.managers: list[ContainerManager] = []

    def to_json(self) -> dict[str, Any]:
        """What :mod:`tests.support.agent_process` needs to run the same agent."""
        c = self.config
        return {
            "root": str(c.root),
            "token": c.token,
            "bridge": c.bridge,
            "subnet": str(c.subnet),
            "nft_table": c.nft_table,
            "backoff_base_s": c.backoff_base_s,
            "backoff_cap_s": c.backoff_cap_s,
            "layer": str(self.images.layer),
            "digest": self.images.image.digest,
        }

    async def setup(self) -> AgentUnderTest:
        # Netlink calls block (and pyroute2 refuses an event loop's thread).
        await asyncio.to_thread(self.network.setup)
        return self

    async def manager(self, **kwargs: Any) -> ContainerManager:
        """A started manager on this agent's root (call again for an 'agent restart')."""
        kwargs.setdefault("tick_s", 0.05)
        kwargs.setdefault("log_poll_s", 0.02)
        m = ContainerManager(self.config, self.images, self.network, self.runc, **kwargs)
        await m.start()
        self.managers.append(m)
        return m

    async def cleanup(self) -> None:
        for m in self.managers:
            with contextlib.suppress(Exception):
                await m.shutdown()
        m = ContainerManager(self.config, self.images, self.network, self.runc)
        pids = []
        for name in list(m.store.names()):
            with contextlib.suppress(Exception):
                rec = m.store.load(name)
                pids.append(rec.sup.pid)
                await m._teardown(rec)
        for pid in pids:
            _reap(pid)
        for item in self.runc.list():
            with contextlib.suppress(AgentError):
                self.runc.delete(item["id"], force=True)
        for cdir in self.config.containers_dir.glob("*/rootfs"):
            with contextlib.suppress(AgentError):
                overlay.unmount(cdir)
        await asyncio.to_thread(self.network.teardown)
        # The manager made this (test) process a child subreaper; undo it so
        # later tests in the session see orphans go to init as usual.
        set_child_subreaper(False)


def _reap(pid: int | None) -> None:
    """Collect a killed container's zombie if this process was its subreaper."""
    deadline = time.monotonic() + 2
    while pid and time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)


def request(name: str, cmd: list[str], **kwargs: Any) -> wire.CreateContainer:
    return wire.parse_create({"name": name, "image": "local/busybox:1", "cmd": cmd, **kwargs})


def unique(prefix: str = "c") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], timeout_s: float = 10.0, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


async def wait_state(
    manager: ContainerManager, name: str, *states: ContainerState, timeout_s: float = 10.0
) -> wire.ContainerInfo:
    def check() -> wire.ContainerInfo | None:
        info = manager.inspect(name)
        return info if info.state in states else None

    result: wire.ContainerInfo = await eventually(check, timeout_s, f"{name} in {states}")
    return result
