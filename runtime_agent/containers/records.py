"""The persisted record of each container: ``containers/<name>/state.json``.

The agent keeps no database: each container's record is one small JSON file
rewritten atomically on every change, so an agent that is killed at any
moment restarts with either the old or the new record, never half of one.
The request is stored exactly as given and read back through
:func:`wire.parse_create`, the same parser the API uses, so a stored record
can never hold something the API would have refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime_agent import wire
from runtime_agent.containers.supervision import Supervision
from runtime_agent.host.errors import HostError, NotFound

log = logging.getLogger("runtime_agent.store")

STATE_FILE = "state.json"


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

    Write a temp file in the same directory (rename is only atomic within one
    filesystem), fsync it before the rename (else the rename can reach the
    disk before the data and leave an empty file), then fsync the directory
    so the rename itself survives a power cut. ``durable=False`` skips the
    fsyncs for files rewritten many times a second (log offsets): the rename
    alone still protects against the agent dying, only not against power loss.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_missing():
            os.unlink(tmp)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _suppress_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, FileNotFoundError)


@dataclass
class ContainerRecord:
    """Everything the agent must remember about one container across restarts."""

    name: str
    request: wire.CreateContainer
    sup: Supervision = field(default_factory=Supervision)
    image_digest: str = ""
    created_at: float = 0.0  # epoch seconds
    address: str | None = None
    netns_path: str | None = None
    lowers: list[str] = field(default_factory=list)  # overlay lower dirs, topmost first
    prepared: bool = False  # rootfs mounted, network attached, bundle written
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "name": self.name,
            "request": dataclasses.asdict(self.request),
            "sup": self.sup.to_json(),
            "image_digest": self.image_digest,
            "created_at": self.created_at,
            "address": self.address,
            "netns_path": self.netns_path,
            "lowers": self.lowers,
            "prepared": self.prepared,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerRecord:
        return cls(
            name=data["name"],
            request=wire.parse_create(data["request"]),
            sup=Supervision.from_json(data["sup"]),
            image_digest=data.get("image_digest", ""),
            created_at=float(data.get("created_at", 0.0)),
            address=data.get("address"),
            netns_path=data.get("netns_path"),
            lowers=list(data.get("lowers", [])),
            prepared=bool(data.get("prepared", False)),
            error=data.get("error"),
        )


class Store:
    """The per-container directories under ``<root>/containers``."""

    def __init__(self, containers_dir: Path) -> None:
        self.dir = containers_dir
        self.dir.mkdir(parents=True, exist_ok=True)

    def container_dir(self, name: str) -> Path:
        # Names are checked by wire.NAME_RE (no '/', no leading '.'), so this
        # join cannot leave the containers directory.
        if not wire.NAME_RE.fullmatch(name):
            raise NotFound(f"no container named {name!r}", name=name)
        return self.dir / name

    def save(self, record: ContainerRecord, *, durable: bool = True) -> None:
        """Write the record atomically. ``durable=False`` skips the fsyncs (see
        :func:`atomic_write`): for state changes on the start path, where two
        fsyncs would cost more than runc start itself; after a power loss
        every container is dead anyway and the request, written durably at
        create, is what matters."""
        cdir = self.container_dir(record.name)
        # Root's alone until the rootfs is mounted (oci/rootfs.py then lets
        # the container's id range in): the containers dir above is passable
        # by anyone, and a container's name is easy to guess.
        cdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps(record.to_json(), indent=1, sort_keys=True).encode()
        atomic_write(cdir / STATE_FILE, data, durable=durable)

    def load(self, name: str) -> ContainerRecord:
        path = self.container_dir(name) / STATE_FILE
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"no container named {name!r}", name=name) from None
        return ContainerRecord.from_json(data)

    def names(self) -> Iterator[str]:
        for entry in sorted(self.dir.iterdir()):
            if (entry / STATE_FILE).is_file():
                yield entry.name

    def load_all(self) -> dict[str, ContainerRecord]:
        """Every stored record; an unreadable one is logged and skipped, not fatal,
        so one corrupt file cannot keep the agent from adopting the others."""
        out: dict[str, ContainerRecord] = {}
        for name in self.names():
            try:
                out[name] = self.load(name)
            except (HostError, ValueError, KeyError, TypeError) as exc:
                log.error("skipping unreadable record of %s: %s", name, exc)
        return out

    def delete(self, name: str) -> None:
        """Remove the container's whole directory (record, logs, bundle)."""
        shutil.rmtree(self.container_dir(name), ignore_errors=False)
