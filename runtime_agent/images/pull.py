"""Pulling an image from its registry into the store: the manifest (an
index resolved to this host's platform), the config, and each layer
fetched, checked against its digest and diff_id, and unpacked once.

Layers are unpacked beside their final place and renamed into it, under a
per-layer file lock, so concurrent pulls (threads or processes) of the same
layer download it once and a crash never leaves a half layer in place.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime_agent.host.errors import ImageNotSupported, InvalidRequest
from runtime_agent.images.manifests import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_CONFIG_BYTES,
    Image,
    descriptors,
    diff_ids_of,
    parse_json,
    pick_platform,
)
from runtime_agent.images.refs import ImageRef

if TYPE_CHECKING:
    # The client (python-dxf, requests: ~8 MiB) is imported on the first pull,
    # not at the agent's start: an idle agent on every host stays small.
    from runtime_agent.images.registry import RegistryClient
    from runtime_agent.images.store import ClientFactory, Credentials, ImageStore
    from runtime_agent.wire import RegistryAuth

log = logging.getLogger("runtime_agent.images")


class RegistryPuller:
    """The registry side of :meth:`ImageStore.pull`: one client per registry."""

    def __init__(
        self,
        store: ImageStore,
        credentials: Credentials | None,
        *,
        ca_file: str | None,
        http_registries: frozenset[str],
        max_layer_bytes: int | None,
        clients: ClientFactory | None = None,
    ) -> None:
        self.store = store
        self._credentials = credentials
        self._make_client = clients
        self._ca_file = ca_file
        self._http = http_registries
        self._max_layer_bytes = max_layer_bytes
        self._clients: dict[str, RegistryClient] = {}
        self._clients_lock = threading.Lock()

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def pull(self, parsed: ImageRef, ref: str, auth: RegistryAuth | None = None) -> Image:
        if auth is not None:
            return self.pull_with(parsed, ref, auth)
        return self._pull(self._client(parsed.registry), parsed, ref)

    def pull_with(self, parsed: ImageRef, ref: str, auth: RegistryAuth) -> Image:
        """Pull with a credential given for this pull: a client of its own,
        closed after it (nothing of the credential outlives the pull), sent
        to the image's registry only. The manifest is fetched even when the
        image is here: its layers were pulled for someone else, and only the
        registry can say whether this credential may read it."""
        if auth.registry.lower() != parsed.registry.lower():
            raise InvalidRequest(
                f"registry_auth is for {auth.registry}, but the image is on {parsed.registry}",
                field="registry_auth.registry",
            )
        from runtime_agent.images.registry import RegistryClient

        with RegistryClient(
            parsed.registry,
            username=auth.username,
            password=auth.password,
            token=auth.token,
            scheme="http" if parsed.registry in self._http else "https",
            ca_file=self._ca_file,
        ) as client:
            return self._pull(client, parsed, ref)

    def _pull(self, client: RegistryClient, parsed: ImageRef, ref: str) -> Image:
        data, digest, media_type = client.get_manifest(parsed.repository, parsed.reference)
        index_digest = None
        if media_type in INDEX_TYPES:
            index_digest = digest
            child = pick_platform(data, ref)
            data, digest, media_type = client.get_manifest(parsed.repository, child)
        cached = self.store.cached(digest, ref)
        if cached:
            return cached
        image = self._pull_manifest(client, parsed, ref, data, digest, media_type)
        self.store.save_record(image, index_digest)
        return image

    def _pull_manifest(
        self,
        client: RegistryClient,
        parsed: ImageRef,
        ref: str,
        data: bytes,
        digest: str,
        media_type: str,
    ) -> Image:
        if media_type not in MANIFEST_TYPES:
            raise ImageNotSupported(
                f"{ref}: manifest type {media_type!r} is not supported"
                " (OCI or Docker schema 2 image manifests only)",
                media_type=media_type,
            )
        manifest = parse_json(data, f"{ref}: manifest")
        config_desc, layer_descs = descriptors(manifest, ref)
        self.store.write_blob(data, digest)
        config = self._fetch_config(client, parsed.repository, config_desc, ref)
        diff_ids = diff_ids_of(config, len(layer_descs), ref)
        for desc, diff_id in zip(layer_descs, diff_ids, strict=True):
            self._ensure_layer(client, parsed.repository, desc, diff_id)
        return Image(
            ref=ref,
            digest=digest,
            config=config,
            layer_digests=[d["digest"] for d in layer_descs],
            diff_ids=diff_ids,
            media_type=media_type,
            config_digest=config_desc["digest"],
        )

    def _fetch_config(
        self, client: RegistryClient, repo: str, desc: dict[str, Any], ref: str
    ) -> dict[str, Any]:
        digest = desc["digest"]
        path = self.store.blob_path(digest)
        if not path.exists():
            client.fetch_blob(repo, digest, path, max_size=MAX_CONFIG_BYTES)
            self.store.stats.blobs_fetched += 1
        config = parse_json(path.read_bytes(), f"{ref}: image config")
        if not isinstance(config, dict):
            raise ImageNotSupported(f"{ref}: image config is not a JSON object")
        return config

    def _ensure_layer(
        self, client: RegistryClient, repo: str, desc: dict[str, Any], diff_id: str
    ) -> None:
        digest = desc["digest"]
        final = self.store.layer_dir(digest)
        if final.is_dir():
            return
        with self.store.flock(f"layer-{digest[7:]}", fcntl.LOCK_EX):
            if final.is_dir():  # another thread or process got there first
                return
            work = Path(tempfile.mkdtemp(prefix=digest[7:19] + "-", dir=self.store.root / "tmp"))
            try:
                blob = work / "blob"
                started = time.monotonic()
                size = client.fetch_blob(repo, digest, blob, max_size=self._size_cap(desc))
                self.store.stats.blobs_fetched += 1
                self.store.stats.bytes_fetched += size
                self.store.unpack_verified(blob, work / "root", digest, diff_id)
                os.replace(work / "root", final)
                log.info(
                    "layer %s: %d bytes fetched and unpacked in %.0f ms",
                    digest[:19],
                    size,
                    (time.monotonic() - started) * 1000,
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)

    def _size_cap(self, desc: dict[str, Any]) -> int | None:
        """No more bytes than the manifest announced: a registry streaming
        endless data is cut off, not only caught by the digest at the end."""
        declared = desc.get("size")
        caps = [c for c in (declared, self._max_layer_bytes) if isinstance(c, int) and c >= 0]
        return min(caps) if caps else None

    def _client(self, registry: str) -> RegistryClient:
        from runtime_agent.images.registry import RegistryClient

        with self._clients_lock:
            if registry not in self._clients and self._make_client is not None:
                made = self._make_client(registry)
                if made is not None:
                    self._clients[registry] = made
            if registry not in self._clients:
                creds = self._credentials(registry) if self._credentials else None
                self._clients[registry] = RegistryClient(
                    registry,
                    username=creds[0] if creds else None,
                    password=creds[1] if creds else None,
                    scheme="http" if registry in self._http else "https",
                    ca_file=self._ca_file,
                )
            return self._clients[registry]
