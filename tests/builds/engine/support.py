"""Test support for the build engine: a local PEP 503 package index serving
a wheel made by hand (builds never reach the internet), and a runner that
starts a built image with runc in its own netns and fetches its HTTP body."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime_agent.images.store import ImageStore
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci import overlay
from runtime_agent.oci.etcfiles import write_etc_files
from runtime_agent.oci.runc import Runc
from runtime_agent.oci.spec import Mount, build_spec, resolve_user
from runtime_agent.wire import Limits

# --- a package index ----------------------------------------------------------


def make_wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """A pure-python wheel (a zip with the module, METADATA, WHEEL, RECORD)."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{dist}-py3-none-any.whl"
    files = {
        f"{name.replace('-', '_')}.py": module_source.encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for rel, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{rel},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in files.items():
            zf.writestr(zipfile.ZipInfo(rel, (2020, 1, 1, 0, 0, 0)), data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class PackageIndex:
    url: str  # ".../simple/"
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serve_index(address: str, wheels: list[Path]) -> Iterator[PackageIndex]:
    """A PEP 503 simple index on ``address`` (the build bridge's gateway)."""
    by_project: dict[str, list[Path]] = {}
    for wheel in wheels:
        project = wheel.name.split("-")[0].replace("_", "-").lower()
        by_project.setdefault(project, []).append(wheel)
    index = PackageIndex(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            index.requests.append(self.path)
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "simple" and parts[1] in by_project:
                links = "".join(
                    f'<a href="/files/{w.name}#sha256={sha256(w)}">{w.name}</a>\n'
                    for w in by_project[parts[1]]
                )
                self._send(200, f"<html><body>\n{links}</body></html>".encode(), "text/html")
                return
            if len(parts) == 2 and parts[0] == "files":
                for wheels_ in by_project.values():
                    for w in wheels_:
                        if w.name == parts[1]:
                            self._send(200, w.read_bytes(), "application/octet-stream")
                            return
            self._send(404, b"not found", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    index.url = f"http://{address}:{server.server_address[1]}/simple/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- running an image -----------------------------------------------------------


@contextlib.contextmanager
def run_image(
    store: ImageStore,
    ref: str,
    network: HostNetwork,
    workdir: Path,
    *,
    cmd: list[str] | None = None,
) -> Iterator[tuple[str, Path]]:
    """Pull ``ref`` and run it detached (its Entrypoint+Cmd, Env, WorkingDir)
    on an overlay, in a netns on ``network``. Yields (address, stdout file)."""
    image = store.pull(ref)
    cfg = image.config.get("config", {})
    cid = f"bt{uuid.uuid4().hex[:10]}"
    base = workdir / cid
    upper, work, rootfs = base / "upper", base / "work", base / "rootfs"
    for d in (upper, work, rootfs):
        d.mkdir(parents=True)
    runc = Runc(workdir / "runc-run")
    mounted = attached = created = False
    try:
        overlay.mount(store.lower_dirs(image), upper, work, rootfs)
        mounted = True
        att = network.attach(cid)
        attached = True
        hosts, resolv = write_etc_files(base / "etc", "app", att.address)
        uid, gid, groups = resolve_user(rootfs, cfg.get("User") or None)
        args = (cfg.get("Entrypoint") or []) + (cmd or cfg.get("Cmd") or [])
        spec = build_spec(
            rootfs=rootfs, args=args, env=cfg.get("Env") or [], cwd=cfg.get("WorkingDir") or "/",
            uid=uid, gid=gid, additional_gids=groups, hostname="app",
            netns_path=att.netns_path,
            mounts=[Mount("/etc/hosts", hosts, True), Mount("/etc/resolv.conf", resolv, True)],
            limits=Limits(memory_bytes=512 << 20), cgroups_path=f"/{cid}",
        )  # fmt: skip
        (base / "config.json").write_text(json.dumps(spec))
        out = base / "stdout.log"
        with open(out, "wb") as f:
            runc.create(cid, base, stdout_fd=f.fileno(), stderr_fd=f.fileno(),
                        pid_file=base / "pid")  # fmt: skip
        created = True
        runc.start(cid)
        yield att.address, out
    finally:
        if created:
            runc.delete(cid, force=True)
        if mounted:
            overlay.unmount(rootfs)
        if attached:
            network.detach(cid)


def assert_serves(
    store: ImageStore, ref: str, network: HostNetwork, workdir: Path, body: str
) -> None:
    """The image ``ref``, run, answers ``body`` on port 8080 (else the
    failure shows what the app wrote)."""
    with run_image(store, ref, network, workdir) as (address, output):
        got = http_get(address, 8080)
        if got != body:
            app_said = output.read_text(errors="replace")
            raise AssertionError(f"{ref} answered {got!r}, not {body!r}; it wrote:\n{app_said}")


# Straight to the container: a proxy from the environment must not get it.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(address: str, port: int, timeout_s: float = 20.0) -> str:
    """The body at http://address:port/, retried until the app listens."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with _NO_PROXY.open(f"http://{address}:{port}/", timeout=3) as resp:
                return resp.read().decode()
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"no HTTP answer from {address}:{port}: {last}")


def mounts_under(path: Path) -> list[str]:
    prefix = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def remove_cgroup_dirs(name: str) -> None:
    """rmdir a top-level cgroup in every hierarchy (v1 controllers and the
    unified one); children must be gone already (runc delete removes them)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        path = hierarchy / name
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()
