"""Who this host's route ports answer, kept in ``ROOT/router_sources`` and
changed while the agent runs.

The join writes the file (``runtime_agent.join``) and the agent reads it
at start (``config.router_sources``). The control plane also replaces the
list on a running agent (``PUT /v1/router-sources``): the operator moved
the router or added one, or the host joined before the join handed out
router sources. :class:`RouterSourcesKeeper` validates the list, writes
the file atomically (a crash leaves the old list or the new one, never a
torn one: the agent refuses to start on an unreadable file) and refills
the nftables set at once (net/bridge.py), without touching containers or
connections: established ones live in conntrack, not in the set.

``PAAS_AGENT_ROUTER_SOURCES`` set on the host wins: the operator pinned the
list there, so a push is kept in the file (it applies once the setting is
removed) but not applied, and the answer says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from runtime_agent.host.errors import InvalidRequest

log = logging.getLogger("runtime_agent.router_sources")

FILE = "router_sources"  # in ROOT
SETTING = "PAAS_AGENT_ROUTER_SOURCES"
# Each is a network; a router tier needs a handful. The bound keeps the nft
# set and the file small whatever a caller sends.
MAX_SOURCES = 64
MAX_ITEM_CHARS = len("255.255.255.255/255.255.255.255")


def parse(items: object) -> tuple[IPv4Network, ...]:
    """A list of IPv4 addresses or networks (``10.0.0.7``, ``10.0.0.0/24``,
    host bits zero), in canonical form, in order, duplicates dropped."""
    if not isinstance(items, list):
        raise InvalidRequest("router_sources must be a list of IPv4 addresses or networks",
                             field="router_sources")  # fmt: skip
    if len(items) > MAX_SOURCES:
        raise InvalidRequest(f"router_sources has {len(items)} entries; at most {MAX_SOURCES}",
                             field="router_sources")  # fmt: skip
    out: list[IPv4Network] = []
    for item in items:
        network = _network(item)
        if network not in out:
            out.append(network)
    return tuple(out)


def _network(item: object) -> IPv4Network:
    # A str only: IPv4Network also takes ints and tuples, which no caller means.
    if not isinstance(item, str) or not 0 < len(item) <= MAX_ITEM_CHARS:
        raise InvalidRequest(f"router_sources: {str(item)[:60]!r} is not an IPv4 address or "
                             "network", field="router_sources")  # fmt: skip
    try:
        return IPv4Network(item, strict=True)
    except ValueError as exc:
        raise InvalidRequest(f"router_sources: {item!r} is not an IPv4 address or network "
                             f"({exc})", field="router_sources") from None  # fmt: skip


def write(root: Path, sources: tuple[IPv4Network, ...]) -> None:
    """Replace ROOT/router_sources atomically: a new file renamed over the old
    one, flushed to disk first (and the directory after the rename)."""
    text = ",".join(str(s) for s in sources) + "\n"
    temp = f".{FILE}.{os.getpid()}.{threading.get_ident()}"
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _remove_quietly(temp, dir_fd)  # a crash's leftover under the same name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(temp, FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _remove_quietly(temp, dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read(root: Path) -> tuple[IPv4Network, ...]:
    """What ROOT/router_sources holds (none if there is no file)."""
    try:
        text = (root / FILE).read_text()
    except FileNotFoundError:
        return ()
    return parse([i.strip() for i in text.replace("\n", ",").split(",") if i.strip()])


def _saved(root: Path) -> tuple[IPv4Network, ...]:
    """The file's list where the setting wins: only shown, so a bad file is
    worth a warning, not a refusal to start."""
    try:
        return read(root)
    except (OSError, InvalidRequest) as exc:
        log.warning("ignoring ROOT/%s (%s is set): %s", FILE, SETTING, exc)
        return ()


def _remove_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


@dataclass(frozen=True)
class Outcome:
    """What a push did: ``stored`` is in the file now, ``in_effect`` is what
    the route ports answer (the setting's, when it pins them)."""

    stored: tuple[IPv4Network, ...]
    in_effect: tuple[IPv4Network, ...]
    overridden_by: str | None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "router_sources": [str(s) for s in self.stored],
            "in_effect": [str(s) for s in self.in_effect],
            "overridden_by": self.overridden_by,
        }
        if self.overridden_by:
            out["message"] = (
                f"{self.overridden_by} is set on this host and wins: route ports answer "
                f"{_listed(self.in_effect)}. The list was saved in ROOT/{FILE} and applies "
                f"once {self.overridden_by} is removed and the agent restarted."
            )
        return out


def _listed(sources: tuple[IPv4Network, ...]) -> str:
    return ", ".join(map(str, sources)) or "no one"


class RouterSourcesKeeper:
    """The running agent's router sources: the file and the nft set agree."""

    def __init__(
        self,
        root: Path,
        current: tuple[IPv4Network, ...],
        apply: Callable[[tuple[IPv4Network, ...]], None],
        *,
        pinned_by_setting: bool,
    ) -> None:
        self.root = root
        self.stored = _saved(root) if pinned_by_setting else current
        self.in_effect = current
        self._apply = apply  # HostNetwork.set_router_sources
        self.pinned_by_setting = pinned_by_setting
        self._lock = threading.Lock()  # two pushes at once: file and set end alike

    def state(self) -> Outcome:
        return Outcome(self.stored, self.in_effect, SETTING if self.pinned_by_setting else None)

    def replace(self, sources: tuple[IPv4Network, ...]) -> Outcome:
        """Blocking (file and nft): call from a thread."""
        with self._lock:
            write(self.root, sources)
            self.stored = sources
            if self.pinned_by_setting:
                log.warning("router sources %s saved but not applied: %s is set",
                            _listed(sources), SETTING)  # fmt: skip
                return Outcome(sources, self.in_effect, SETTING)
            # Applied even when unchanged: a push also repairs a set edited by hand.
            self._apply(sources)
            if sources != self.in_effect:
                log.info("route ports answer %s only (was %s)",
                         _listed(sources), _listed(self.in_effect))  # fmt: skip
            self.in_effect = sources
            return Outcome(sources, sources, None)
