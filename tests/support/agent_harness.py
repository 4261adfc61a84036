"""Agents for tests, three ways, one module:

- :class:`AgentUnderTest`: a real ContainerManager in this process (its own
  data root, bridge, subnet and nft table with random names, so concurrent
  runs never meet; real runc, overlay and network), with :class:`LocalImages`
  standing in for the registry-backed store. :meth:`AgentUnderTest.cleanup`
  removes everything it made even when the test failed half-way.
- This module run as a program (:func:`main`), a ContainerManager in a
  separate process, as the real agent runs, so a test can stop "the agent"
  for good and start another one: containers it started are then not
  children of the next agent::

      python -m tests.support.agent_harness CONFIG_JSON create REQUEST_JSON
      python -m tests.support.agent_harness CONFIG_JSON watch NAME SECONDS

  ``create`` creates and starts, prints the ContainerInfo as JSON and exits
  (leaving the container running). ``watch`` adopts, prints the info, waits
  up to SECONDS for NAME to leave "running", prints the info again and exits.
- :class:`AgentProcess`: the real daemon (``python -m runtime_agent``) on a
  free port, and :func:`cleanup`, which removes what it leaves behind
  (containers, mounts, netns, bridge, table). Its API is HTTPS only: the
  harness pins the certificate the agent's files hold (``fingerprint``),
  as the control plane pins the one a host joined with.
- :func:`server_tls`: a certificate for an in-process ApiServer, and the
  pinned aiohttp connector its clients use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import aiohttp

from runtime_agent import wire
from runtime_agent.api.tls import certificate_fingerprint, ensure_certificate, server_context
from runtime_agent.config import AgentConfig
from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.cmd import output, run
from runtime_agent.host.errors import HostError
from runtime_agent.host.libc import set_child_subreaper
from runtime_agent.host.tls import PinnedHTTPSConnection, fingerprint_bytes
from runtime_agent.net import links, nsthread
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci import rootfs
from runtime_agent.oci.runc import Runc
from runtime_agent.wire import ContainerState
from tests.support.processes import async_wait_until, free_port, wait_until
from tests.support.rootfs import make_busybox_rootfs

# --- in this process -------------------------------------------------------------


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

    def pull(self, ref: str, *, refresh: bool = True, auth: Any = None) -> LocalImage:
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
            self.config.net_dir,
            self.config.bridge,
            self.config.subnet,
            self.config.nft_table,
            policy=self.config.policy_settings(),
        )
        self.managers: list[ContainerManager] = []

    def to_json(self) -> dict[str, Any]:
        """What :func:`main` (this module run as a program) needs to run the same agent."""
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
            with contextlib.suppress(HostError):
                self.runc.delete(item["id"], force=True)
        for cdir in self.config.containers_dir.glob("*/"):
            with contextlib.suppress(HostError):
                rootfs.unmount(cdir)
        await asyncio.to_thread(self.network.teardown)
        # The manager made this (test) process a child subreaper; undo it so
        # later tests in the session see orphans go to init as usual.
        set_child_subreaper(False)


def _reap(pid: int | None) -> None:
    """Collect a killed container's zombie if this process was its subreaper."""

    def reaped() -> bool:
        try:
            return bool(os.waitpid(pid, os.WNOHANG)[0]) if pid else True
        except ChildProcessError:
            return True

    with contextlib.suppress(TimeoutError):
        wait_until(reaped, timeout_s=2, what=f"the exit of {pid}")


def traversable_root(wanted: Path) -> Path:
    """A short agent root whose parents others may search (/tmp/pa-XXXX,
    0711), linked from ``wanted``: runc resolves each rootfs under the agent
    root as the container's unprivileged host uid, and pytest keeps its tmp
    dirs 0700 (and sets them so again whenever a session starts)."""
    real = Path(tempfile.mkdtemp(prefix="pa-", dir="/tmp"))
    real.chmod(0o711)
    wanted.parent.mkdir(parents=True, exist_ok=True)
    if wanted.is_dir() and not wanted.is_symlink() and not any(wanted.iterdir()):
        wanted.rmdir()
    wanted.symlink_to(real)
    return real


def request(name: str, cmd: list[str], **kwargs: Any) -> wire.CreateContainer:
    return wire.parse_create({"name": name, "image": "local/busybox:1", "cmd": cmd, **kwargs})


def unique(prefix: str = "c") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def exec_sh(manager: ContainerManager, name: str, script: str) -> tuple[int, str]:
    """Run ``sh -c script`` in a container: its exit code and merged output."""
    out = await manager.exec(name, wire.ExecRequest(cmd=["sh", "-c", script], timeout_s=30))
    code, text = -1, b""
    async for stream, chunk in out:
        if stream == "exit":
            assert isinstance(chunk, int)
            code = chunk
        else:
            assert isinstance(chunk, bytes)
            text += chunk
    return code, text.decode(errors="replace")


async def wait_state(
    manager: ContainerManager, name: str, *states: ContainerState, timeout_s: float = 10.0
) -> wire.ContainerInfo:
    def check() -> wire.ContainerInfo | None:
        info = manager.inspect(name)
        return info if info.state in states else None

    info: wire.ContainerInfo = await async_wait_until(
        check, timeout_s=timeout_s, what=f"{name} in {states}"
    )
    return info


# --- TLS for an in-process ApiServer ------------------------------------------------


@dataclass(frozen=True)
class ServerTls:
    context: ssl.SSLContext
    fingerprint: str

    def connector(self) -> aiohttp.TCPConnector:
        """A client connector that accepts this certificate only (call in a loop)."""
        return aiohttp.TCPConnector(ssl=aiohttp.Fingerprint(fingerprint_bytes(self.fingerprint)))


@functools.cache
def server_tls() -> ServerTls:
    """One agent certificate for the session's in-process servers."""
    directory = Path(tempfile.mkdtemp(prefix="agent-tls-"))
    cert, key = ensure_certificate(directory / "tls")
    return ServerTls(server_context(cert, key), certificate_fingerprint(cert))


# --- the real daemon, as a process ----------------------------------------------


REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def host_networks() -> list[IPv4Network]:
    """Every IPv4 network configured on the host's interfaces right now."""
    nets = []
    for line in output(["ip", "-4", "-o", "addr", "show"]).splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(IPv4Network(parts[parts.index("inet") + 1], strict=False))
    return nets


def unused_subnet() -> IPv4Network:
    """A random /24 in 10.100-199.x (the network tests use 10.200-255) that
    overlaps nothing on the host."""
    taken = host_networks()
    for _ in range(200):
        subnet = IPv4Network(f"10.{100 + secrets.randbelow(100)}.{secrets.randbelow(256)}.0/24")
        if not any(subnet.overlaps(n) for n in taken):
            return subnet
    raise RuntimeError("no unused 10.x subnet found")


@dataclass
class AgentProcess:
    """One agent process and the environment it was started with."""

    root: Path
    token: str
    port: int
    bridge: str
    subnet: IPv4Network
    nft_table: str
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None
    # A test host made as a network namespace (tests/support/netns_hosts.py):
    # the agent runs in it and listens on its address there.
    netns: str | None = None
    listen_host: str = "127.0.0.1"
    fingerprint: str = ""

    @classmethod
    def fresh(cls, root: Path, **extra_env: str) -> AgentProcess:
        """An agent for ``root`` (which becomes a link to its real, short root).

        Its certificate is made now, as ``runtime_agent.join`` would make it
        before the agent's first start, so a test can join it before it runs."""
        suffix = secrets.token_hex(3)
        agent = cls(
            root=traversable_root(root),
            token=secrets.token_urlsafe(24),
            port=free_port(),
            bridge=f"pg{suffix}",
            subnet=unused_subnet(),
            nft_table=f"paas_g_{suffix}",
            extra_env=dict(extra_env),
        )
        if "PAAS_AGENT_TLS_CERT" not in extra_env:
            ensure_certificate(agent.root / "tls")
        agent.fingerprint = agent.current_fingerprint() or ""
        return agent

    @property
    def url(self) -> str:
        return f"https://{self.listen_host}:{self.port}"

    def current_fingerprint(self) -> str | None:
        """The fingerprint of the certificate the agent's settings name (None
        while it has none yet)."""
        cert = self.extra_env.get("PAAS_AGENT_TLS_CERT") or str(self.root / "tls" / "cert.pem")
        try:
            return certificate_fingerprint(Path(cert))
        except HostError:
            return None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_AGENT_")}
        env.update(
            {
                "PAAS_AGENT_ROOT": str(self.root),
                "PAAS_AGENT_LISTEN": f"{self.listen_host}:{self.port}",
                "PAAS_AGENT_TOKEN": self.token,
                "PAAS_AGENT_BRIDGE": self.bridge,
                "PAAS_AGENT_SUBNET": str(self.subnet),
                "PAAS_AGENT_NFT_TABLE": self.nft_table,
                "PAAS_AGENT_DRAIN_TIMEOUT_S": "3",
                "PYTHONPATH": str(REPO),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, *, wait: bool = True) -> None:
        """Start ``python -m runtime_agent``; with ``wait``, until /v1/info answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        n = len(list(self.root.glob("agent-*.stderr")))
        self.stderr_path = self.root / f"agent-{n}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*self.enter_netns(), sys.executable, "-m", "runtime_agent"],
                env=self.env(),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        if wait:
            self.wait_ready()

    def enter_netns(self) -> list[str]:
        """The argv prefix that runs a program in the agent's network
        namespace (only that namespace: mounts stay the host's), by exec,
        so the PID is the program's."""
        if self.netns is None:
            return []
        return ["nsenter", f"--net={links.netns_path(self.netns)}", "--"]

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.stderr()}")
            # Whatever its files hold now (a test may have replaced them):
            # the harness talks to the agent it started.
            self.fingerprint = self.current_fingerprint() or ""
            return bool(self.fingerprint) and self.request("GET", "/v1/info", timeout=1)[0] == 200

        try:
            wait_until(answers, timeout_s=timeout_s, what="the agent's /v1/info")
        except TimeoutError:
            raise RuntimeError(
                f"agent did not answer within {timeout_s}s:\n{self.stderr()}"
            ) from None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "default",
        timeout: float = 60,
    ) -> tuple[int, Any]:
        """(status, JSON body or text) over HTTPS with the agent's certificate
        pinned; status 0 when nothing answers (CertificateMismatch when
        another certificate does)."""
        headers = {}
        token = self.token if token == "default" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = PinnedHTTPSConnection(
            self.listen_host, self.port, pin=self.fingerprint, timeout=timeout
        )
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, _decode(resp.read(), resp.headers.get("Content-Type", ""))
        except (OSError, http.client.HTTPException):
            return 0, None
        finally:
            conn.close()

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _decode(raw: bytes, content_type: str) -> Any:
    if content_type.startswith("application/json"):
        return json.loads(raw)
    if content_type.startswith("application/x-ndjson"):
        return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    return raw.decode(errors="replace")


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    prefix = str(root)
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def cleanup(agent: AgentProcess) -> None:
    """Remove everything the agent (or a test through it) made; safe to call twice.

    Containers first (kill + delete through runc with the agent's --root),
    then mounts under the root, then the network objects, then the files.
    """
    agent.kill()
    runc_root = agent.root / "runc"
    if runc_root.is_dir():
        listed = run(["runc", "--root", str(runc_root), "list", "-q"], check=False)
        for cid in listed.stdout.decode().split():
            run(["runc", "--root", str(runc_root), "kill", cid, "KILL"], check=False)
            run(["runc", "--root", str(runc_root), "delete", "--force", cid], check=False)
    for point in sorted(_mounts_under(agent.root), key=len, reverse=True):
        run(["umount", "--lazy", point], check=False)
    network = HostNetwork(agent.root / "net", agent.bridge, agent.subnet, agent.nft_table)
    with contextlib.suppress(Exception):
        if agent.netns is None:
            network.teardown()
        elif links.netns_alive(agent.netns):  # its bridge and tables are in there
            nsthread.run_in(links.netns_path(agent.netns), network.teardown)
    if not _mounts_under(agent.root):
        run(["rm", "-rf", "--one-file-system", str(agent.root)], check=False)


# --- a manager in a child process (python -m tests.support.agent_harness) -------


def _emit(info: wire.ContainerInfo) -> None:
    print(json.dumps(info.to_json()), flush=True)


async def main(raw: dict[str, Any], action: str, arg: str, extra: list[str]) -> None:
    config = AgentConfig(
        root=Path(raw["root"]),
        token=raw["token"],
        bridge=raw["bridge"],
        subnet=IPv4Network(raw["subnet"]),
        nft_table=raw["nft_table"],
        backoff_base_s=raw["backoff_base_s"],
        backoff_cap_s=raw["backoff_cap_s"],
    )
    images = LocalImages(Path("/nonexistent"), layer=Path(raw["layer"]), digest=raw["digest"])
    network = HostNetwork(
        config.net_dir,
        config.bridge,
        config.subnet,
        config.nft_table,
        policy=config.policy_settings(),
    )
    manager = ContainerManager(
        config, images, network, Runc(config.runc_root), tick_s=0.05, log_poll_s=0.02
    )
    await manager.start()
    try:
        if action == "create":
            _emit(await manager.create(wire.parse_create(json.loads(arg))))
            return
        _emit(manager.inspect(arg))
        with contextlib.suppress(TimeoutError):
            await async_wait_until(
                lambda: manager.inspect(arg).state != ContainerState.RUNNING,
                timeout_s=float(extra[0]),
            )
        _emit(manager.inspect(arg))
    finally:
        await manager.shutdown()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]))
