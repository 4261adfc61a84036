"""A client for OCI Distribution registries, built on python-dxf.

python-dxf does the HTTP: the auth dance (basic, or bearer tokens from the
registry's token server), pagination and uploads. This module adds what the
agent and the builder need on top: image references, typed errors from the
agent's family, exact manifest bytes with their digest checked, and blobs
written to disk only after their sha256 is verified while streaming.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, cast

import requests
from dxf import DXF, DXFBase
from dxf import exceptions as dxf_errors
from www_authenticate import parse as parse_challenge  # python-dxf's own dependency

from runtime_agent.host.errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidRequest,
    RegistryError,
)
from runtime_agent.images.media import (
    CHUNK,
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    sha256_digest,
    sha256_file,
)
from runtime_agent.images.refs import DIGEST_RE, REPOSITORY_RE

# The media types and digests are re-exported (they were first defined here).
__all__ = [
    "RegistryClient",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "OCI_MANIFEST",
    "sha256_digest",
    "sha256_file",
]


class RegistryClient:
    """One registry, one HTTP session shared by all repositories.

    Credentials over plain HTTP are refused (python-dxf refuses them too):
    use ``scheme="https"`` with ``ca_file`` for a self-signed registry.
    Thread-safe by a lock: a ``requests.Session`` is not meant to be shared
    between threads mid-request.

    Besides a username and password, a client may hold a ready bearer
    ``token`` (the agent: a short-lived pull token the control plane minted
    for one repository; never renewed, a 401 is final), or a
    ``token_source`` that answers a registry's challenge scope
    (``repository:app:pull,push``) with a token (the control plane, which
    holds the registry's signing key, needs no token endpoint).
    """

    def __init__(
        self,
        registry: str,
        *,
        username: str | None = None,
        password: str | None = None,
        scheme: str = "https",
        ca_file: str | None = None,
        timeout: float = 60.0,
        token: str | None = None,
        token_source: Callable[[str], str] | None = None,
    ) -> None:
        if scheme not in ("http", "https"):
            raise InvalidRequest(f"registry scheme must be http or https, not {scheme!r}")
        if scheme == "http" and (username is not None or token or token_source):
            raise RegistryError(
                f"refusing to send credentials for {registry} over plain http; use https",
                registry=registry,
            )
        self.registry = registry
        self._username = username
        self._password = password
        self._token_source = token_source
        self._lock = threading.RLock()
        self._base = DXFBase(
            registry,
            # A fixed token is all there is: no callback could get a better one.
            auth=None if token else self._authenticate,
            insecure=scheme == "http",
            tlsverify=ca_file if ca_file else True,
            timeout=timeout,
        )
        if token:
            self._base.token = token  # DXF.from_base copies it to every repository
            self._username = "(pull token)"
        self._base.__enter__()  # one pooled session instead of one per request
        self._repos: dict[str, DXF] = {}
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._base.__exit__(None, None, None)
                self._repos = {}

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _authenticate(self, dxf: DXFBase, response: requests.Response) -> None:
        # Called by dxf on a 401: basic auth, or a bearer token from the
        # realm the registry names, with the scope it asks for.
        if self._token_source is not None:
            challenge = parse_challenge(response.headers.get("www-authenticate", ""))
            scope = (challenge.get("bearer") or {}).get("scope", "")
            if scope:
                dxf.token = self._token_source(scope)
            return
        dxf.authenticate(self._username, self._password, response=response)

    def _repo(self, repo: str) -> DXF:
        if repo not in self._repos:
            if not REPOSITORY_RE.fullmatch(repo):
                raise InvalidRequest(f"bad repository name {repo!r}", field="repository")
            self._repos[repo] = DXF.from_base(self._base, repo)
        return self._repos[repo]

    def _fail(self, exc: Exception, what: str, repo: str) -> NoReturn:
        _raise_registry_error(exc, what, self.registry, repo, self._username)

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """The manifest's exact bytes, its digest and its media type.

        When ``ref`` is a digest, the bytes must hash to it; otherwise they
        must match the registry's Docker-Content-Digest when it sends one.
        """
        with self._lock:
            try:
                _, resp = self._repo(repo).get_manifest_and_response(ref)
            except (dxf_errors.DXFError, requests.RequestException) as exc:
                self._fail(exc, "get manifest", f"{repo}:{ref}")
        data = resp.content
        digest = sha256_digest(data)
        expected = ref if DIGEST_RE.fullmatch(ref) else resp.headers.get("Docker-Content-Digest")
        if expected and expected != digest:
            raise DigestMismatch(
                f"manifest {self.registry}/{repo}@{ref}: expected {expected}, got {digest}",
                expected=expected,
                got=digest,
            )
        media_type = _media_type(data, resp.headers.get("Content-Type", ""))
        return data, digest, media_type

    def fetch_blob(self, repo: str, digest: str, dest: Path, *, max_size: int | None = None) -> int:
        """Download a blob to ``dest``, hashing while streaming; ``dest``
        appears (atomically, by rename) only if the digest matched. Returns
        the size in bytes."""
        if not DIGEST_RE.fullmatch(digest):
            raise InvalidRequest(f"bad blob digest {digest!r}", field="digest")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as out, self._lock:
                size = self._stream_blob(repo, digest, out, max_size)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
        return size

    def _stream_blob(self, repo: str, digest: str, out: Any, max_size: int | None) -> int:
        h, size = hashlib.sha256(), 0
        try:
            chunks = cast(Iterable[bytes], self._repo(repo).pull_blob(digest, chunk_size=CHUNK))
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise RegistryError(
                        f"blob {digest} in {self.registry}/{repo} is over {max_size} bytes",
                        registry=self.registry,
                    )
                out.write(chunk)
        except (dxf_errors.DXFError, requests.RequestException) as exc:
            self._fail(exc, "fetch blob", f"{repo}@{digest}")
        got = "sha256:" + h.hexdigest()
        if got != digest:  # dxf checks too; this holds even if it stops doing so
            raise DigestMismatch(
                f"blob {self.registry}/{repo}@{digest}: content hashes to {got}",
                expected=digest,
                got=got,
            )
        return size

    def has_blob(self, repo: str, digest: str) -> bool:
        with self._lock:
            try:
                self._repo(repo).blob_size(digest)
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    return False
                self._fail(exc, "check blob", f"{repo}@{digest}")
            except (dxf_errors.DXFError, requests.RequestException) as exc:
                self._fail(exc, "check blob", f"{repo}@{digest}")
        return True

    def push_blob(self, repo: str, path: Path) -> str:
        """Upload a file as a blob; skipped (one HEAD) if the registry has it."""
        with self._lock:
            try:
                return str(self._repo(repo).push_blob(str(path), check_exists=True))
            except (dxf_errors.DXFError, requests.RequestException) as exc:
                self._fail(exc, "push blob", f"{repo} ({path})")

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Link a blob another repository of this registry has into ``repo``
        without uploading it. False when the registry would not (then push)."""
        if not DIGEST_RE.fullmatch(digest):
            raise InvalidRequest(f"bad blob digest {digest!r}", field="digest")
        with self._lock:
            try:
                self._repo(repo).mount_blob(from_repo, digest)
            except dxf_errors.DXFMountFailed:
                return False
            except (dxf_errors.DXFError, requests.RequestException) as exc:
                self._fail(exc, "mount blob", f"{repo}@{digest} from {from_repo}")
        return True

    def push_blob_bytes(self, repo: str, data: bytes) -> str:
        """Upload small in-memory content (an image config); skipped if present."""
        digest = sha256_digest(data)
        with self._lock:
            try:
                return str(self._repo(repo).push_blob(data=iter([data]), digest=digest))
            except (dxf_errors.DXFError, requests.RequestException) as exc:
                self._fail(exc, "push blob", f"{repo}@{digest}")

    def push_manifest(self, repo: str, data: bytes, ref: str, media_type: str) -> str:
        """Put a manifest under a tag (or its digest); returns its digest.

        The exact bytes are sent, so the digest is the sha256 of ``data``.
        """
        declared = _declared_media_type(data)
        if declared != media_type:
            raise InvalidRequest(
                f"manifest declares mediaType {declared!r}, not {media_type!r}", field="manifest"
            )
        with self._lock:
            try:
                # dxf takes the media type from the JSON; bytes keep the body exact.
                self._repo(repo).set_manifest(ref, data)  # type: ignore[arg-type]
            except (dxf_errors.DXFError, requests.RequestException) as exc:
                self._fail(exc, "push manifest", f"{repo}:{ref}")
        return sha256_digest(data)

    def list_tags(self, repo: str) -> list[str]:
        """Tags of a repository; an unknown repository has none."""
        with self._lock:
            try:
                return sorted(self._repo(repo).list_aliases())
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    return []
                self._fail(exc, "list tags", repo)
            except (dxf_errors.DXFError, requests.RequestException) as exc:
                self._fail(exc, "list tags", repo)

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete a manifest by digest (the registry must allow deletes); its
        tags go with it. Blobs stay until the registry's own garbage collect."""
        if not DIGEST_RE.fullmatch(digest):
            raise InvalidRequest(f"delete needs a digest, not {digest!r}", field="digest")
        with self._lock:
            try:
                self._repo(repo).del_alias(digest)
            except (dxf_errors.DXFError, requests.RequestException) as exc:
                self._fail(exc, "delete manifest", f"{repo}@{digest}")


def _declared_media_type(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InvalidRequest(f"manifest is not JSON: {exc}", field="manifest") from exc
    value = doc.get("mediaType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def _media_type(data: bytes, content_type: str) -> str:
    """The manifest's own mediaType field wins; OCI allows leaving it out, and
    then the Content-Type header says."""
    try:
        declared = _declared_media_type(data)
    except InvalidRequest as exc:
        raise RegistryError(f"registry sent a manifest that is not JSON: {exc.message}") from exc
    return declared or content_type.split(";")[0].strip()


def _raise_registry_error(
    exc: Exception, what: str, registry: str, repo: str, username: str | None
) -> NoReturn:
    """Turn dxf/requests errors into the agent's family with a clear message."""
    where = f"{registry}/{repo}"
    if isinstance(exc, dxf_errors.DXFUnauthorizedError):
        err = RegistryError(
            f"registry {registry} refused the credentials"
            f" for user {username!r} ({what} {where}): 401 unauthorized",
            registry=registry,
        )
        err.permanent = True
        raise err from exc
    if isinstance(exc, dxf_errors.DXFDigestMismatchError):
        raise DigestMismatch(
            f"{what} {where}: expected {exc.expected}, got {exc.got}",
            expected=exc.expected,
            got=exc.got,
        ) from exc
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        body = exc.response.text[:500]
        if status == 404:
            raise ImageNotFound(f"{what} {where}: not found", registry=registry) from exc
        err = RegistryError(f"{what} {where}: HTTP {status}: {body}", registry=registry)
        err.permanent = 400 <= status < 500 and status != 429
        raise err from exc
    if isinstance(exc, requests.exceptions.SSLError):
        err = RegistryError(f"{what} {where}: TLS failed: {exc}", registry=registry)
        err.permanent = True
        raise err from exc
    if isinstance(exc, requests.RequestException):
        raise RegistryError(
            f"{what} {where}: cannot reach the registry: {exc}", registry=registry
        ) from exc
    if isinstance(exc, dxf_errors.DXFError):
        raise RegistryError(f"{what} {where}: {exc}", registry=registry) from exc
    raise exc
