"""The OCI image a build produces: config and manifest documents, the push
(blobs first, the manifest last, so a tag never points at a half-pushed
image), tags and the pruning of old images."""

from __future__ import annotations

import json
import logging
import platform
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paas.builds.engine.plan import ImageSettings
from paas.core.failpoints import failpoint
from runtime_agent.host.errors import RegistryError
from runtime_agent.images.layers import LayerInfo
from runtime_agent.images.registry import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    RegistryClient,
)

log = logging.getLogger("paas.builds.engine")
VERSION_TAG_RE = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class Layer:
    """A layer of the image being built. ``path`` is the blob on disk, or
    None for a base layer already in the registry (in ``source_repo``)."""

    info: LayerInfo
    path: Path | None
    source_repo: str | None = None
    created_by: str = ""
    media_type: str = OCI_LAYER_GZIP


def oci_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def canonical(doc: dict[str, Any]) -> bytes:
    """Stable bytes (sorted keys, no spaces): the same document always has the
    same digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def env_list(env: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


def image_config(
    settings: ImageSettings,
    layers: list[Layer],
    *,
    created: str,
    base_history: list[dict[str, Any]],
) -> dict[str, Any]:
    config: dict[str, Any] = {"Env": env_list(settings.env), "WorkingDir": settings.workdir}
    if settings.cmd is not None:
        config["Cmd"] = settings.cmd
    if settings.entrypoint is not None:
        config["Entrypoint"] = settings.entrypoint
    if settings.user:
        config["User"] = settings.user
    if settings.exposed_ports:
        config["ExposedPorts"] = {p: {} for p in settings.exposed_ports}
    if settings.labels:
        config["Labels"] = dict(settings.labels)
    return {
        "created": created,
        "architecture": oci_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.info.diff_id for layer in layers]},
        "history": _history(layers, created, base_history),
    }


def _history(
    layers: list[Layer], created: str, base_history: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    # Docker pairs history entries without empty_layer with the layers, in
    # order: keep the base's when it matches, else write one per layer.
    base_count = sum(1 for layer in layers if layer.path is None)
    real = [h for h in base_history if not h.get("empty_layer")]
    history = list(base_history) if len(real) == base_count else []
    if not history:
        history = [
            {"created": created, "created_by": layer.created_by or "base layer"}
            for layer in layers
            if layer.path is None
        ]
    for layer in layers:
        if layer.path is not None:
            history.append({"created": created, "created_by": layer.created_by})
    return history


def manifest(config_bytes: bytes, config_digest: str, layers: list[Layer]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": layer.media_type, "digest": layer.info.digest, "size": layer.info.size}
            for layer in layers
        ],
    }


def push_layers(
    client: RegistryClient, repo: str, layers: list[Layer], say: Callable[[str], None]
) -> None:
    """Every layer into ``repo``: skipped when the registry has it, mounted
    from the base's repository when it is there (no upload at all), else
    uploaded."""
    for layer in layers:
        digest = layer.info.digest
        if client.has_blob(repo, digest):
            continue
        if layer.path is None:
            if layer.source_repo and client.mount_blob(repo, digest, layer.source_repo):
                say(f"layer {digest[:19]} mounted from {layer.source_repo}")
                continue
            raise RegistryError(f"base layer {digest} is not in the registry any more")
        client.push_blob(repo, layer.path)
        say(f"layer {digest[:19]} pushed ({layer.info.size} bytes)")


def push_image(
    client: RegistryClient,
    repo: str,
    layers: list[Layer],
    config_doc: dict[str, Any],
    tags: list[str],
    say: Callable[[str], None],
    *,
    point: str | None = None,
) -> tuple[str, int]:
    """Push everything; returns (manifest digest, total image size).

    ``point`` names the failpoint between the blobs and the manifest: an
    app's build passes one, the stack's publication does not, so a test
    that stops a worker at an app's push never stops at the stack's."""
    push_layers(client, repo, layers, say)
    if point:
        failpoint(point)  # blobs up, no manifest: nothing tagged yet
    config_bytes = canonical(config_doc)
    config_digest = client.push_blob_bytes(repo, config_bytes)
    manifest_bytes = canonical(manifest(config_bytes, config_digest, layers))
    digest = ""
    for tag in tags:
        digest = client.push_manifest(repo, manifest_bytes, tag, OCI_MANIFEST)
    size = len(config_bytes) + sum(layer.info.size for layer in layers)
    return digest, size


def prune_versions(
    client: RegistryClient, repo: str, keep: int, protected: Collection[str] = ()
) -> list[str]:
    """Delete the images of all but the newest ``keep`` version tags. A digest
    still tagged by a kept version (an identical rebuild) is kept: deleting a
    manifest deletes every tag on it. ``protected`` digests (images a
    release still references) are never deleted."""
    if keep <= 0:
        return []
    versions = sorted(
        (int(m.group(1)), tag)
        for tag in client.list_tags(repo)
        if (m := VERSION_TAG_RE.fullmatch(tag))
    )
    if len(versions) <= keep:
        return []
    digest_of = {tag: client.get_manifest(repo, tag)[1] for _n, tag in versions}
    kept = {digest_of[tag] for _n, tag in versions[-keep:]}
    deleted: list[str] = []
    for _n, tag in versions[:-keep]:
        digest = digest_of[tag]
        if digest not in kept and digest not in deleted and digest not in protected:
            client.delete_manifest(repo, digest)
            deleted.append(digest)
    return deleted
