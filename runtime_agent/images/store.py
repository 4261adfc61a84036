"""The local image store: pull images once, keep each layer unpacked once.

Layout under the store root (paths kept short on purpose: every lowerdir
of an overlay mount is spelled out in full in its options)::

    layers/<hex>/        one unpacked layer, named by its blob digest
    blobs/sha256/<hex>   manifests and configs (layer tars are not kept)
    images/<hex>.json    what a pulled manifest resolved to
    tags/<hash>.json     the digest a tag reference had when last pulled
    tmp/                 work in progress; renamed into place when complete
    locks/               flock files (one per layer, one for gc)

A layer dir appears only by an atomic rename of a fully unpacked, fsynced
and diff_id-checked temp dir, so a crash mid-pull leaves no half layer, and
"layers/<hex> exists" is the whole cache check: a second pull of the same
image fetches and unpacks nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime_agent.host.errors import (
    AgentError,
    DigestMismatch,
    ImageNotSupported,
    InvalidRequest,
    NotFound,
)
from runtime_agent.host.libc import get_errno, libc
from runtime_agent.images.layers import LayerInfo, unpack_layer
from runtime_agent.images.registry import (
    DIGEST_RE,
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    ImageRef,
    RegistryClient,
    sha256_digest,
)

log = logging.getLogger("runtime_agent.images")

Credentials = Callable[[str], "tuple[str, str] | None"]

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


@dataclass
class StoreStats:
    """What the store did, for logs and tests."""

    blobs_fetched: int = 0
    layers_unpacked: int = 0
    bytes_fetched: int = 0


class ImageStore:
    """Pull, cache and garbage-collect images under ``root``.

    ``credentials(registry_host)`` returns ``(username, password)`` or None.
    Registries are spoken to over https (``ca_file`` to trust a private CA)
    except the ones listed in ``http_registries``.
    """

    def __init__(
        self,
        root: Path,
        credentials: Credentials | None = None,
        *,
        ca_file: str | None = None,
        http_registries: frozenset[str] = frozenset(),
        max_layer_bytes: int | None = None,
    ) -> None:
        self.root = Path(root)
        self._credentials = credentials
        self._ca_file = ca_file
        self._http = http_registries
        self._max_layer_bytes = max_layer_bytes
        self._clients: dict[str, RegistryClient] = {}
        self._clients_lock = threading.Lock()
        self.stats = StoreStats()
        for sub in ("layers", "blobs/sha256", "images", "tags", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    # -------------------------------------------------------------- pulling

    def pull(self, ref: str, *, refresh: bool = True) -> Image:
        """Make ``ref`` available locally and describe it.

        A digest reference already in the store needs no network at all; a
        tag costs one manifest request (tags move), and nothing more when
        its layers are here. ``refresh=False`` trusts the last pull of the
        tag instead (like ``docker run``'s pull policy "missing").
        """
        parsed = ImageRef.parse(ref)
        with self._shared_lock():
            known = parsed.digest or (None if refresh else self._tag_digest(ref))
            if known:
                cached = self._cached(known, ref)
                if cached:
                    return cached
            image = self._pull_from_registry(parsed, ref)
            if not parsed.digest:
                self._save_tag(ref, image.digest)
            return image

    def _pull_from_registry(self, parsed: ImageRef, ref: str) -> Image:
        client = self._client(parsed.registry)
        data, digest, media_type = client.get_manifest(parsed.repository, parsed.reference)
        index_digest = None
        if media_type in INDEX_TYPES:
            index_digest = digest
            child = _pick_platform(data, ref)
            data, digest, media_type = client.get_manifest(parsed.repository, child)
        cached = self._cached(digest, ref)
        if cached:
            return cached
        image = self._pull_manifest(client, parsed, ref, data, digest, media_type)
        self._save_record(image, index_digest)
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
        manifest = _json(data, f"{ref}: manifest")
        config_desc, layer_descs = _descriptors(manifest, ref)
        self._write_blob(data, digest)
        config = self._fetch_config(client, parsed.repository, config_desc, ref)
        diff_ids = _diff_ids(config, len(layer_descs), ref)
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
        path = self._blob_path(digest)
        if not path.exists():
            client.fetch_blob(repo, digest, path, max_size=MAX_CONFIG_BYTES)
            self.stats.blobs_fetched += 1
        config = _json(path.read_bytes(), f"{ref}: image config")
        if not isinstance(config, dict):
            raise ImageNotSupported(f"{ref}: image config is not a JSON object")
        return config

    def _ensure_layer(
        self, client: RegistryClient, repo: str, desc: dict[str, Any], diff_id: str
    ) -> None:
        digest = desc["digest"]
        final = self.layer_dir(digest)
        if final.is_dir():
            return
        with self._flock(f"layer-{digest[7:]}", fcntl.LOCK_EX):
            if final.is_dir():  # another thread or process got there first
                return
            work = Path(tempfile.mkdtemp(prefix=digest[7:19] + "-", dir=self.root / "tmp"))
            try:
                blob = work / "blob"
                started = time.monotonic()
                size = client.fetch_blob(repo, digest, blob, max_size=self._size_cap(desc))
                self.stats.blobs_fetched += 1
                self.stats.bytes_fetched += size
                self._unpack_verified(blob, work / "root", digest, diff_id)
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

    def _unpack_verified(self, blob: Path, dest: Path, digest: str, diff_id: str) -> None:
        dest.mkdir(mode=0o755)
        unpacked = unpack_layer(blob, dest, max_bytes=self._max_layer_bytes)
        if unpacked.diff_id != diff_id:
            raise DigestMismatch(
                f"layer {digest}: uncompressed content hashes to {unpacked.diff_id},"
                f" the image config says {diff_id}",
                expected=diff_id,
                got=unpacked.diff_id,
            )
        self.stats.layers_unpacked += 1
        _syncfs(dest)  # contents on disk before the rename makes them "complete"

    def import_layer(self, blob: Path, info: LayerInfo) -> Path:
        """Put a layer built locally (``layers.pack_layer``) into the store,
        so the builder need not download what it just pushed."""
        final = self.layer_dir(info.digest)
        if final.is_dir():
            return final
        with self._shared_lock(), self._flock(f"layer-{info.digest[7:]}", fcntl.LOCK_EX):
            if final.is_dir():
                return final
            work = Path(tempfile.mkdtemp(prefix=info.digest[7:19] + "-", dir=self.root / "tmp"))
            try:
                self._unpack_verified(blob, work / "root", info.digest, info.diff_id)
                os.replace(work / "root", final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return final

    # ------------------------------------------------------------- querying

    def layer_dir(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise InvalidRequest(f"bad layer digest {digest!r}", field="digest")
        return self.root / "layers" / digest[7:]

    def lower_dirs(self, image: Image) -> list[Path]:
        """Layer dirs for overlay's lowerdir: topmost (last) layer first."""
        dirs = [self.layer_dir(d) for d in reversed(image.layer_digests)]
        missing = [str(d) for d in dirs if not d.is_dir()]
        if missing:
            raise NotFound(
                f"image {image.ref}: layers missing from the store (pull it again): {missing}"
            )
        return dirs

    def get(self, digest: str) -> Image | None:
        """An image already in the store, by manifest (or index) digest."""
        return self._cached(digest, digest)

    def images(self) -> list[Image]:
        out = []
        for record in sorted((self.root / "images").glob("*.json")):
            image = self._cached("sha256:" + record.stem, "")
            if image and image.digest == "sha256:" + record.stem:
                out.append(image)
        return out

    def _tag_path(self, ref: str) -> Path:
        return self.root / "tags" / (sha256_digest(ref.encode())[7:39] + ".json")

    def _tag_digest(self, ref: str) -> str | None:
        path = self._tag_path(ref)
        if not path.exists():
            return None
        info = _json(path.read_bytes(), str(path))
        return str(info["digest"]) if info.get("ref") == ref else None

    def _save_tag(self, ref: str, digest: str) -> None:
        _write_json_atomic(self._tag_path(ref), {"ref": ref, "digest": digest})

    # ----------------------------------------------------------------- gc

    def gc(self, in_use_digests: set[str]) -> list[str]:
        """Remove every layer not used by an image in ``in_use_digests``
        (manifest digests; layer digests are kept as such too, for layers a
        build is still using). Images not in use are forgotten along with
        their manifests and configs. Returns the removed layer digests."""
        with self._flock("gc", fcntl.LOCK_EX):
            records = {
                path: _json(path.read_bytes(), str(path))
                for path in (self.root / "images").glob("*.json")
            }
            in_use = set(in_use_digests)
            # An index digest in use keeps the platform manifest it resolved to.
            in_use |= {
                r["alias_of"]
                for r in records.values()
                if r["digest"] in in_use_digests and r.get("alias_of")
            }
            keep_layers, keep_blobs = set(in_use), set(in_use)
            for record, info in records.items():
                if info["digest"] in in_use:
                    keep_layers.update(info.get("layers", []))
                    keep_blobs.update([info["digest"], info.get("config_digest", "")])
                else:
                    record.unlink()
            for tag in (self.root / "tags").glob("*.json"):
                if _json(tag.read_bytes(), str(tag))["digest"] not in in_use:
                    tag.unlink()
            self._remove_blobs(keep_blobs)
            removed = self._remove_layers(keep_layers)
            for leftover in (self.root / "tmp").iterdir():  # from a crashed pull
                shutil.rmtree(leftover, ignore_errors=True)
        if removed:
            log.info("gc removed %d layers", len(removed))
        return removed

    def _remove_layers(self, keep: set[str]) -> list[str]:
        removed = []
        for layer in sorted((self.root / "layers").iterdir()):
            digest = "sha256:" + layer.name
            if digest in keep:
                continue
            # Rename first: a half-deleted layer must never look complete.
            doomed = self.root / "tmp" / f"gc-{layer.name}"
            os.replace(layer, doomed)
            shutil.rmtree(doomed)
            # No pull holds it: pulls hold the gc lock shared, we hold it exclusively.
            (self.root / "locks" / f"layer-{layer.name}").unlink(missing_ok=True)
            removed.append(digest)
        return removed

    def _remove_blobs(self, keep: set[str]) -> None:
        for blob in (self.root / "blobs/sha256").iterdir():
            if "sha256:" + blob.name not in keep:
                blob.unlink()

    # ------------------------------------------------------------- helpers

    def _client(self, registry: str) -> RegistryClient:
        with self._clients_lock:
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

    def _cached(self, digest: str, ref: str) -> Image | None:
        record = self.root / "images" / f"{digest[7:]}.json"
        if not DIGEST_RE.match(digest) or not record.exists():
            return None
        info = _json(record.read_bytes(), str(record))
        if info.get("alias_of"):  # an index digest pointing at its platform manifest
            return self._cached(info["alias_of"], ref)
        if not all(self.layer_dir(d).is_dir() for d in info["layers"]):
            return None  # gc'd meanwhile: pull again
        config_path = self._blob_path(info["config_digest"])
        if not config_path.exists():
            return None
        return Image(
            ref=ref,
            digest=info["digest"],
            config=_json(config_path.read_bytes(), str(config_path)),
            layer_digests=list(info["layers"]),
            diff_ids=list(info["diff_ids"]),
            media_type=info["media_type"],
            config_digest=info["config_digest"],
        )

    def _save_record(self, image: Image, index_digest: str | None) -> None:
        record = {
            "digest": image.digest,
            "config_digest": image.config_digest,
            "layers": image.layer_digests,
            "diff_ids": image.diff_ids,
            "media_type": image.media_type,
        }
        _write_json_atomic(self.root / "images" / f"{image.digest[7:]}.json", record)
        if index_digest:
            alias = {"digest": index_digest, "alias_of": image.digest}
            _write_json_atomic(self.root / "images" / f"{index_digest[7:]}.json", alias)

    def _blob_path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise InvalidRequest(f"bad digest {digest!r}", field="digest")
        return self.root / "blobs/sha256" / digest[7:]

    def _write_blob(self, data: bytes, digest: str) -> None:
        path = self._blob_path(digest)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    @contextlib.contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        fd = os.open(self.root / "locks" / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _shared_lock(self) -> contextlib.AbstractContextManager[None]:
        """Pulls share this lock; gc takes it exclusively, so it never deletes
        a layer a pull has just unpacked but not yet recorded."""
        return self._flock("gc", fcntl.LOCK_SH)


# ------------------------------------------------------------- manifests


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ImageNotSupported(f"{what} is not valid JSON: {exc}") from exc


def _descriptors(manifest: Any, ref: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        config, layers = manifest["config"], manifest["layers"]
        descs = [config, *layers]
        for d in descs:
            if not DIGEST_RE.match(d["digest"]) or not isinstance(d["mediaType"], str):
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


def _diff_ids(config: dict[str, Any], n_layers: int, ref: str) -> list[str]:
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != n_layers:
        raise ImageNotSupported(
            f"{ref}: the config lists {len(diff_ids or [])} diff_ids for {n_layers} layers"
        )
    for d in diff_ids:
        if not isinstance(d, str) or not DIGEST_RE.match(d):
            raise ImageNotSupported(f"{ref}: bad diff_id {d!r}")
    return diff_ids


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return "linux", arch


def _pick_platform(index_data: bytes, ref: str) -> str:
    """The manifest of a multi-platform index that this host can run."""
    index = _json(index_data, f"{ref}: index")
    want_os, want_arch = host_platform()
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            digest = entry.get("digest", "")
            if DIGEST_RE.match(digest):
                return str(digest)
    raise ImageNotSupported(f"{ref}: no manifest for {want_os}/{want_arch} in the index")


def _write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    os.replace(tmp, path)


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            err = get_errno()
            raise AgentError(f"syncfs {path} failed: {os.strerror(err)}")
    finally:
        os.close(fd)
