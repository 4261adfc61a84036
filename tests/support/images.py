"""Build tiny real OCI images for tests and push them to a test registry.

The base is /bin/busybox from busybox-static (one static binary, so no
libraries to copy): layer 1 is a rootfs with busybox and its applet
symlinks, /etc/passwd and /etc/group; layer 2 adds /www/index.html. The
image config runs busybox httpd on port 8080.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime_agent.host.cmd import output
from runtime_agent.images.layers import LayerInfo, pack_layer
from runtime_agent.images.registry import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    RegistryClient,
)
from tests.support.registry import TestRegistry

BUSYBOX = Path("/bin/busybox")
HTTP_PORT = 8080
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


@dataclass(frozen=True)
class BuiltImage:
    """An image pushed to a test registry."""

    registry: str  # "127.0.0.1:PORT"
    repository: str
    tag: str
    digest: str  # manifest digest
    config: dict[str, Any]
    config_digest: str
    layers: list[LayerInfo] = field(default_factory=list)
    index_body: str = ""  # what GET / on port 8080 answers

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def pinned_ref(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


def oci_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def make_busybox_rootfs(root: Path) -> None:
    """A minimal root filesystem: busybox, its applets as symlinks, users."""
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev", "var/log"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "root", 0o700)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    applets = output([str(BUSYBOX), "--list"]).split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            link = root / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)


def make_www_layer(root: Path, body: str) -> None:
    (root / "www").mkdir(parents=True, exist_ok=True)
    (root / "www/index.html").write_text(body)


def image_config(
    diff_ids: list[str],
    *,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    workdir: str = "/",
    exposed: list[int] | None = None,
    entrypoint: list[str] | None = None,
    user: str = "",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An OCI image config (also valid as a Docker one)."""
    cfg: dict[str, Any] = {
        "Env": env if env is not None else [DEFAULT_PATH],
        "WorkingDir": workdir,
    }
    if cmd is not None:
        cfg["Cmd"] = cmd
    if entrypoint is not None:
        cfg["Entrypoint"] = entrypoint
    if exposed:
        cfg["ExposedPorts"] = {f"{p}/tcp": {} for p in exposed}
    if user:
        cfg["User"] = user
    if labels:
        cfg["Labels"] = labels
    return {
        "architecture": oci_arch(),
        "os": "linux",
        "created": "1980-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1980-01-01T00:00:00Z", "created_by": "tests"} for _ in diff_ids],
    }


def canonical_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def push_image(
    client: RegistryClient,
    repository: str,
    tag: str,
    layers: list[tuple[Path, LayerInfo]],
    config: dict[str, Any],
    *,
    media: str = "oci",
) -> tuple[str, str]:
    """Push layer blobs, the config and a manifest; returns (manifest digest,
    config digest). ``media`` is "oci" or "docker" (schema 2)."""
    oci = media == "oci"
    for path, info in layers:
        pushed = client.push_blob(repository, path)
        assert pushed == info.digest, (pushed, info.digest)
    config_bytes = canonical_json(config)
    config_digest = client.push_blob_bytes(repository, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER_GZIP if oci else DOCKER_LAYER_GZIP,
                "digest": info.digest,
                "size": info.size,
            }
            for _, info in layers
        ],
    }
    media_type = manifest["mediaType"]
    assert isinstance(media_type, str)
    digest = client.push_manifest(repository, canonical_json(manifest), tag, media_type)
    return digest, config_digest


def pack_dirs(workdir: Path, dirs: list[Path]) -> list[tuple[Path, LayerInfo]]:
    """Pack each dir as a layer blob under ``workdir``."""
    out = []
    for i, d in enumerate(dirs):
        blob = workdir / f"layer{i}.tar.gz"
        out.append((blob, pack_layer(d, blob, from_overlay_upper=True)))
    return out


def build_busybox_image(
    registry: TestRegistry,
    workdir: Path,
    *,
    repository: str | None = None,
    tag: str = "v1",
    body: str | None = None,
    media: str = "oci",
) -> BuiltImage:
    """Build the two-layer busybox httpd image and push it to ``registry``."""
    repository = repository or f"test/busybox-{secrets.token_hex(3)}"
    body = body or f"hello from busybox {secrets.token_hex(4)}\n"
    base, www = workdir / "base", workdir / "www"
    make_busybox_rootfs(base)
    make_www_layer(www, body)
    layers = pack_dirs(workdir, [base, www])
    config = image_config(
        [info.diff_id for _, info in layers],
        cmd=["httpd", "-f", "-p", str(HTTP_PORT), "-h", "/www"],
        workdir="/www",
        exposed=[HTTP_PORT],
    )
    with registry.client() as client:
        digest, config_digest = push_image(client, repository, tag, layers, config, media=media)
    return BuiltImage(
        registry=registry.host,
        repository=repository,
        tag=tag,
        digest=digest,
        config=config,
        config_digest=config_digest,
        layers=[info for _, info in layers],
        index_body=body,
    )
