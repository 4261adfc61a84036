"""Run the agent as a REAL process (``python -m runtime_agent``) for tests and
the benchmark: its own data root, free port, bridge, subnet and nft table,
so it never meets another run's objects; and a cleanup that removes what
it leaves behind (containers, mounts, netns, bridge, table)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from runtime_agent.host.cmd import output, run
from runtime_agent.net.bridge import HostNetwork

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    @classmethod
    def fresh(cls, root: Path, **extra_env: str) -> AgentProcess:
        suffix = secrets.token_hex(3)
        return cls(
            root=root,
            token=secrets.token_urlsafe(24),
            port=free_port(),
            bridge=f"pg{suffix}",
            subnet=unused_subnet(),
            nft_table=f"paas_g_{suffix}",
            extra_env=dict(extra_env),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_AGENT_")}
        env.update(
            {
                "PAAS_AGENT_ROOT": str(self.root),
                "PAAS_AGENT_LISTEN": f"127.0.0.1:{self.port}",
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
                [sys.executable, "-m", "runtime_agent"],
                env=self.env(),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.stderr()}")
            status, _ = self.request("GET", "/v1/info", timeout=1)
            if status == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"agent did not answer within {timeout_s}s:\n{self.stderr()}")

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
        """(status, JSON body or text); status 0 when nothing answers."""
        headers = {}
        token = self.token if token == "default" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _decode(resp.read(), resp.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read(), exc.headers.get("Content-Type", ""))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

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
    with contextlib.suppress(Exception):
        HostNetwork(agent.root / "net", agent.bridge, agent.subnet, agent.nft_table).teardown()
    if not _mounts_under(agent.root):
        run(["rm", "-rf", "--one-file-system", str(agent.root)], check=False)
