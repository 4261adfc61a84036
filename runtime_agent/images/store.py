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
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime_agent.host.errors import (
    DigestMismatch,
    HostError,
    InvalidRequest,
    NotFound,
)
from runtime_agent.host.libc import get_errno, libc
from runtime_agent.images.layers import LayerInfo, UnpackLimits, unpack_layer
from runtime_agent.images.manifests import Image, parse_json
from runtime_agent.images.media import (
    sha256_digest,
)
from runtime_agent.images.pull import RegistryPuller
from runtime_agent.images.refs import DIGEST_RE, ImageRef
from runtime_agent.wire import RegistryAuth

if TYPE_CHECKING:
    # Imported on the first pull (see pull.py), not at the agent's start.
    from runtime_agent.images.registry import RegistryClient

log = logging.getLogger("runtime_agent.images")

Credentials = Callable[[str], "tuple[str, str] | None"]
# A registry's client made by the caller, or None for one made from
# ``credentials``: the builder's own for the platform's registry in token
# mode answers each challenge with a token it mints (no realm involved).
ClientFactory = Callable[[str], "RegistryClient | None"]


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
        layer_limits: UnpackLimits | None = None,
        clients: ClientFactory | None = None,
    ) -> None:
        self.root = Path(root)
        self._max_layer_bytes = max_layer_bytes
        self._layer_limits = layer_limits or UnpackLimits()
        self.stats = StoreStats()
        self._puller = RegistryPuller(
            self,
            credentials,
            ca_file=ca_file,
            http_registries=http_registries,
            max_layer_bytes=max_layer_bytes,
            clients=clients,
        )
        for sub in ("layers", "blobs/sha256", "images", "tags", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self._puller.close()

    # -------------------------------------------------------------- pulling

    def pull(self, ref: str, *, refresh: bool = True, auth: RegistryAuth | None = None) -> Image:
        """Make ``ref`` available locally and describe it.

        A digest reference already in the store needs no network at all; a
        tag costs one manifest request (tags move), and nothing more when
        its layers are here. ``refresh=False`` trusts the last pull of the
        tag instead (like ``docker run``'s pull policy "missing"). With
        ``auth`` (a credential for this pull only) the registry is always
        asked: see RegistryPuller.pull_with.
        """
        parsed = ImageRef.parse(ref)
        with self._shared_lock():
            known = parsed.digest or (None if refresh else self._tag_digest(ref))
            if known and auth is None and (cached := self.cached(known, ref)):
                return cached
            image = self._puller.pull(parsed, ref, auth)
            if not parsed.digest:
                self._save_tag(ref, image.digest)
            return image

    def unpack_verified(self, blob: Path, dest: Path, digest: str, diff_id: str) -> None:
        dest.mkdir(mode=0o755)
        unpacked = unpack_layer(
            blob, dest, max_bytes=self._max_layer_bytes, limits=self._layer_limits
        )
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
        with self._shared_lock(), self.flock(f"layer-{info.digest[7:]}", fcntl.LOCK_EX):
            if final.is_dir():
                return final
            work = Path(tempfile.mkdtemp(prefix=info.digest[7:19] + "-", dir=self.root / "tmp"))
            try:
                self.unpack_verified(blob, work / "root", info.digest, info.diff_id)
                os.replace(work / "root", final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return final

    # ------------------------------------------------------------- querying

    def layer_dir(self, digest: str) -> Path:
        if not DIGEST_RE.fullmatch(digest):
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
        return self.cached(digest, digest)

    def images(self) -> list[Image]:
        out = []
        for record in sorted((self.root / "images").glob("*.json")):
            image = self.cached("sha256:" + record.stem, "")
            if image and image.digest == "sha256:" + record.stem:
                out.append(image)
        return out

    def _tag_path(self, ref: str) -> Path:
        return self.root / "tags" / (sha256_digest(ref.encode())[7:39] + ".json")

    def _tag_digest(self, ref: str) -> str | None:
        path = self._tag_path(ref)
        if not path.exists():
            return None
        info = parse_json(path.read_bytes(), str(path))
        return str(info["digest"]) if info.get("ref") == ref else None

    def _save_tag(self, ref: str, digest: str) -> None:
        _write_json_atomic(self._tag_path(ref), {"ref": ref, "digest": digest})

    # ----------------------------------------------------------------- gc

    def gc(self, in_use_digests: set[str]) -> list[str]:
        """Remove every layer not used by an image in ``in_use_digests``
        (manifest digests; layer digests are kept as such too, for layers a
        build is still using). Images not in use are forgotten along with
        their manifests and configs. Returns the removed layer digests."""
        with self.flock("gc", fcntl.LOCK_EX):
            records = {
                path: parse_json(path.read_bytes(), str(path))
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
                if parse_json(tag.read_bytes(), str(tag))["digest"] not in in_use:
                    tag.unlink()
            _remove_blobs(self.root / "blobs/sha256", keep_blobs)
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

    # ------------------------------------------------------------- helpers

    def cached(self, digest: str, ref: str) -> Image | None:
        record = self.root / "images" / f"{digest[7:]}.json"
        if not DIGEST_RE.fullmatch(digest) or not record.exists():
            return None
        info = parse_json(record.read_bytes(), str(record))
        if info.get("alias_of"):  # an index digest pointing at its platform manifest
            return self.cached(info["alias_of"], ref)
        if not all(self.layer_dir(d).is_dir() for d in info["layers"]):
            return None  # gc'd meanwhile: pull again
        config_path = self.blob_path(info["config_digest"])
        if not config_path.exists():
            return None
        return Image(
            ref=ref,
            digest=info["digest"],
            config=parse_json(config_path.read_bytes(), str(config_path)),
            layer_digests=list(info["layers"]),
            diff_ids=list(info["diff_ids"]),
            media_type=info["media_type"],
            config_digest=info["config_digest"],
        )

    def save_record(self, image: Image, index_digest: str | None) -> None:
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

    def blob_path(self, digest: str) -> Path:
        if not DIGEST_RE.fullmatch(digest):
            raise InvalidRequest(f"bad digest {digest!r}", field="digest")
        return self.root / "blobs/sha256" / digest[7:]

    def write_blob(self, data: bytes, digest: str) -> None:
        path = self.blob_path(digest)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    @contextlib.contextmanager
    def flock(self, name: str, mode: int) -> Iterator[None]:
        fd = os.open(self.root / "locks" / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _shared_lock(self) -> contextlib.AbstractContextManager[None]:
        """Pulls share this lock; gc takes it exclusively, so it never deletes
        a layer a pull has just unpacked but not yet recorded."""
        return self.flock("gc", fcntl.LOCK_SH)


def _remove_blobs(blobs: Path, keep: set[str]) -> None:
    for blob in blobs.iterdir():
        if "sha256:" + blob.name not in keep:
            blob.unlink()


def _write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    os.replace(tmp, path)


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            err = get_errno()
            raise HostError(f"syncfs {path} failed: {os.strerror(err)}")
    finally:
        os.close(fd)
