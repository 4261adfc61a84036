"""Image references: ``registry/repository[:tag][@digest]``, parsed and
checked against the reference grammar of the Distribution project."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime_agent.host.errors import InvalidRequest

# The reference grammar of the Distribution project, reduced to what we use.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class ImageRef:
    """``registry/repository[:tag][@digest]``; the registry part is required
    (no implicit docker.io: the agent talks to configured registries only)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        rest, _, digest = ref.partition("@")
        if digest and not DIGEST_RE.fullmatch(digest):
            raise InvalidRequest(f"image reference {ref!r}: bad digest {digest!r}", field="image")
        first, slash, path = rest.partition("/")
        if not slash or not ("." in first or ":" in first or first == "localhost"):
            raise InvalidRequest(
                f"image reference {ref!r} has no registry host (like 127.0.0.1:5000/app:v1)",
                field="image",
            )
        repository, tag = path, None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            repository, _, tag = path.rpartition(":")
            if not _TAG_RE.fullmatch(tag):
                raise InvalidRequest(f"image reference {ref!r}: bad tag {tag!r}", field="image")
        if not REPOSITORY_RE.fullmatch(repository):
            raise InvalidRequest(
                f"image reference {ref!r}: bad repository name {repository!r}", field="image"
            )
        if tag is None and not digest:
            tag = "latest"
        return cls(first, repository, tag, digest or None)

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out
