"""What the agent and build benchmarks need around them, apart from the tests' helpers.

Built on the product's own code where it has it: the registry is set up the
way ``manage.py setup_registry`` sets up the platform's (TLS and token auth,
:func:`paas.builds.registry_server.prepare`; tokens minted like the worker's),
images are packed and pushed with the agent's layer code and the builder's
publisher. What is left here: starting and stopping processes by PID, the
agent daemon as a process, a busybox httpd image and a one-wheel package index.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `paas` and `runtime_agent` importable
    sys.path.insert(0, str(REPO))

from paas.builds.engine.plan import ImageSettings  # noqa: E402
from paas.builds.engine.publish import Layer, image_config, push_image  # noqa: E402
from paas.builds.registry_server import RegistrySetup, prepare  # noqa: E402
from paas.builds.registry_tokens import TokenSigner, parse_scopes, pull_access  # noqa: E402
from runtime_agent.api.tls import certificate_fingerprint, ensure_certificate  # noqa: E402
from runtime_agent.host.cmd import output, run  # noqa: E402
from runtime_agent.host.libc import libc  # noqa: E402
from runtime_agent.host.tls import PinnedHTTPSConnection  # noqa: E402
from runtime_agent.images.layers import pack_layer  # noqa: E402
from runtime_agent.images.registry import RegistryClient  # noqa: E402
from runtime_agent.net.bridge import HostNetwork  # noqa: E402

T = TypeVar("T")
HTTP_PORT = 8080  # the busybox image's httpd
PR_SET_PDEATHSIG = 1

# --- processes and waits ----------------------------------------------------------


def wait_until(predicate: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout_s}s")
        time.sleep(0.02)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], log: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """A helper process that dies with the benchmark (PR_SET_PDEATHSIG)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0),
            **popen,
        )


def stop(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> int:
    """SIGTERM by PID, SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=grace_s)


# --- the registry -----------------------------------------------------------------


@contextlib.contextmanager
def registry(workdir: Path) -> Iterator[RegistrySetup]:
    """The platform's registry setup (TLS, token auth) on a free port."""
    setup = prepare(workdir, port=free_port())
    proc = start(["docker-registry", "serve", setup.config_file], workdir / "registry.log")
    context = ssl.create_default_context(cafile=setup.ca_file)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "registry.log").read_text(errors="replace")[-2000:])
        try:
            urllib.request.urlopen(f"https://{setup.host}/v2/", timeout=2, context=context)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for the password
        except OSError:
            return False
        return True

    try:
        wait_until(answers, 60, f"docker-registry on {setup.host}")
        yield setup
    finally:
        stop(proc)


def token_source(setup: RegistrySetup) -> Callable[[str], str]:
    """Answers the registry's challenges like the worker does (it holds the key)."""
    signer = TokenSigner(Path(setup.token_key), Path(setup.token_cert))
    return lambda scope: signer.mint(parse_scopes(scope), subject="bench", ttl_s=300)


def pull_auth(setup: RegistrySetup, image_ref: str) -> dict[str, str]:
    """The ``registry_auth`` of an agent request: a pull token for the
    image's repository, as the control plane sends with each create."""
    repository = image_ref.split("/", 1)[1].split("@")[0].split(":")[0]
    signer = TokenSigner(Path(setup.token_key), Path(setup.token_cert))
    token = signer.mint(pull_access(repository), subject="bench-agent", ttl_s=600)
    return {"registry": setup.host, "token": token}


def client(setup: RegistrySetup) -> RegistryClient:
    return RegistryClient(setup.host, ca_file=setup.ca_file, token_source=token_source(setup))


# --- a busybox httpd image ----------------------------------------------------------


def push_busybox_image(setup: RegistrySetup, workdir: Path) -> str:
    """Two layers (busybox with its applets; /www/index.html), httpd on
    HTTP_PORT; returns the pinned reference ``host/repo@sha256:...``."""
    base, www = workdir / "base", workdir / "www"
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
        (base / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", base / "bin/busybox")
    for applet in output(["/bin/busybox", "--list"]).split():
        if applet != "busybox" and not (base / "bin" / applet).exists():
            (base / "bin" / applet).symlink_to("busybox")
    (base / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (base / "etc/group").write_text("root:x:0:\n")
    (www / "www").mkdir(parents=True)
    (www / "www/index.html").write_text("hello from the benchmark\n")
    layers = []
    for i, tree in enumerate((base, www)):
        blob = workdir / f"layer{i}.tar.gz"
        layers.append(Layer(pack_layer(tree, blob, from_overlay_upper=True), blob))
    settings = ImageSettings(
        env={"PATH": "/bin"},
        cmd=["httpd", "-f", "-p", str(HTTP_PORT), "-h", "/www"],
        workdir="/www",
        exposed_ports=[f"{HTTP_PORT}/tcp"],
    )
    config = image_config(settings, layers, created="1980-01-01T00:00:00Z", base_history=[])
    repo = f"bench/busybox-{secrets.token_hex(3)}"
    with client(setup) as c:
        digest, _ = push_image(c, repo, layers, config, ["v1"], lambda line: None)
    return f"{setup.host}/{repo}@{digest}"


# --- the agent daemon as a process -----------------------------------------------------


@dataclass
class AgentDaemon:
    """``python -m runtime_agent`` on its own root, port, bridge, subnet and table."""

    root: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: IPv4Network = field(
        default_factory=lambda: IPv4Network(
            f"10.{100 + secrets.randbelow(100)}.{secrets.randbelow(256)}.0/24"
        )
    )
    proc: subprocess.Popen[bytes] | None = None
    fingerprint: str = ""  # of the certificate the agent serves, pinned by request()
    # One keep-alive connection: the TLS handshake is paid once, not inside
    # every timed request (the benches measure containers, not handshakes).
    _conn: http.client.HTTPSConnection | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def bridge(self) -> str:
        return f"pb{self.suffix}"

    @property
    def nft_table(self) -> str:
        return f"paas_b_{self.suffix}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_AGENT_")}
        env.update(
            PAAS_AGENT_ROOT=str(self.root),
            PAAS_AGENT_LISTEN=f"127.0.0.1:{self.port}",
            PAAS_AGENT_TOKEN=self.token,
            PAAS_AGENT_BRIDGE=self.bridge,
            PAAS_AGENT_SUBNET=str(self.subnet),
            PAAS_AGENT_NFT_TABLE=self.nft_table,
            PAAS_AGENT_DRAIN_TIMEOUT_S="3",
            PYTHONPATH=str(REPO),
            **self.env,
        )
        # The certificate the agent will serve, made first as a join makes it.
        self.fingerprint = certificate_fingerprint(ensure_certificate(self.root / "tls")[0])
        argv = [sys.executable, "-m", "runtime_agent"]
        self.proc = start(argv, self.root / "agent.log", env=env, cwd=REPO)
        wait_until(lambda: self._answers(), 60, "the agent's /v1/info")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError((self.root / "agent.log").read_text(errors="replace")[-3000:])
        return self.request("GET", "/v1/info", timeout=1)[0] == 200

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float = 60
    ) -> tuple[int, Any]:
        """(status, JSON body); status 0 when nothing answers. Over the kept
        connection, or a new one when it was closed (a request the agent
        never answered on a kept connection is sent once more: the agent's
        calls are idempotent)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        with self._lock:
            for fresh in (self._conn is None, True):
                conn = self._connection(timeout)
                try:
                    conn.request(method, path, body=data, headers=headers)
                    resp = conn.getresponse()
                    return resp.status, json.loads(resp.read() or b"null")
                except (OSError, http.client.HTTPException):
                    conn.close()
                    self._conn = None
                    if fresh:
                        return 0, None
        return 0, None

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = PinnedHTTPSConnection("127.0.0.1", self.port, pin=self.fingerprint)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def cleanup(self) -> None:
        """Stop the agent, then remove what it leaves: containers, mounts,
        the network objects and the files."""
        if self.proc is not None:
            stop(self.proc)
        runc_root = self.root / "runc"
        if runc_root.is_dir():
            listed = run(["runc", "--root", str(runc_root), "list", "-q"], check=False)
            for cid in listed.stdout.decode().split():
                run(["runc", "--root", str(runc_root), "delete", "--force", cid], check=False)
        for point in sorted(mounts_under(self.root), key=len, reverse=True):
            run(["umount", "--lazy", point], check=False)
        with contextlib.suppress(Exception):
            HostNetwork(self.root / "net", self.bridge, self.subnet, self.nft_table).teardown()
        if not mounts_under(self.root):
            shutil.rmtree(self.root, ignore_errors=True)


def mounts_under(root: Path) -> list[str]:
    prefix = os.path.realpath(root)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def remove_cgroup_dirs(name: str) -> None:
    """rmdir a top-level cgroup in every hierarchy (runc removed its children)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        with contextlib.suppress(OSError):
            (hierarchy / name).rmdir()


# --- a one-wheel package index -------------------------------------------------------


WHEEL = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def make_wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """A pure-python wheel: the module, METADATA, WHEEL and RECORD."""
    dist = f"{name}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files = {
        f"{name}.py": module_source.encode(),
        f"{dist}.dist-info/METADATA": metadata.encode(),
        f"{dist}.dist-info/WHEEL": WHEEL,
    }
    record = [f"{rel},sha256={_b64_sha256(data)},{len(data)}" for rel, data in files.items()] + [
        f"{dist}.dist-info/RECORD,,"
    ]
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in files.items():
            zf.writestr(zipfile.ZipInfo(rel, (2020, 1, 1, 0, 0, 0)), data)
    return path


def _b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@contextlib.contextmanager
def serve_wheel(address: str, wheel: Path) -> Iterator[str]:
    """A PEP 503 index of one wheel on ``address``; yields its ``/simple/`` URL."""
    project = wheel.name.split("-")[0].replace("_", "-").lower()
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = f'<a href="/files/{wheel.name}#sha256={digest}">{wheel.name}</a>\n'.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == f"/simple/{project}":
                self._send(page, "text/html")
            elif self.path == f"/files/{wheel.name}":
                self._send(wheel.read_bytes(), "application/octet-stream")
            else:
                self.send_error(404)

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
