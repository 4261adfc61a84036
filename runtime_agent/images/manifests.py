"""OCI and Docker image documents as the store reads them: media types,
the manifest's descriptors, the config's diff_ids, an index resolved to
this host's platform, and :class:`Image`, what a pull returns."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from typing import Any

from runtime_agent.host.errors import ImageNotSupported
from runtime_agent.images.media import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
)
from runtime_agent.images.refs import DIGEST_RE

MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
CONFIG_TYPES = {OCI_CONFIG, DOCKER_CONFIG}
LAYER_TYPES = {
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    DOCKER_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar",
}
MAX_CONFIG_BYTES = 8 << 20


@dataclass(frozen=True)
class Image:
    ref: str  # as asked for
    digest: str  # manifest digest (the platform manifest, for an index)
    config: dict[str, Any]  # the whole OCI image config ("config", "rootfs", ...)
    layer_digests: list[str]  # blob digests, bottom layer first
    diff_ids: list[str] = field(default_factory=list)
    media_type: str = OCI_MANIFEST
    config_digest: str = ""


def parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ImageNotSupported(f"{what} is not valid JSON: {exc}") from exc


def descriptors(manifest: Any, ref: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        config, layers = manifest["config"], manifest["layers"]
        descs = [config, *layers]
        for d in descs:
            if not DIGEST_RE.fullmatch(d["digest"]) or not isinstance(d["mediaType"], str):
                raise ValueError(f"bad descriptor {d!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageNotSupported(f"{ref}: malformed manifest: {exc}") from exc
    if config["mediaType"] not in CONFIG_TYPES:
        raise ImageNotSupported(f"{ref}: config type {config['mediaType']!r} is not an image")
    for layer in layers:
        if layer["mediaType"] not in LAYER_TYPES:
            raise ImageNotSupported(
                f"{ref}: layer {layer['digest']} has type {layer['mediaType']!r};"
                " only tar and tar+gzip layers are supported"
            )
    return config, layers


def diff_ids_of(config: dict[str, Any], n_layers: int, ref: str) -> list[str]:
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != n_layers:
        raise ImageNotSupported(
            f"{ref}: the config lists {len(diff_ids or [])} diff_ids for {n_layers} layers"
        )
    for d in diff_ids:
        if not isinstance(d, str) or not DIGEST_RE.fullmatch(d):
            raise ImageNotSupported(f"{ref}: bad diff_id {d!r}")
    return diff_ids


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return "linux", arch


def pick_platform(index_data: bytes, ref: str) -> str:
    """The manifest of a multi-platform index that this host can run."""
    index = parse_json(index_data, f"{ref}: index")
    want_os, want_arch = host_platform()
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            digest = entry.get("digest", "")
            if DIGEST_RE.fullmatch(digest):
                return str(digest)
    raise ImageNotSupported(f"{ref}: no manifest for {want_os}/{want_arch} in the index")
