"""git's pkt-line framing and side-band multiplexing (gitprotocol-common,
gitprotocol-pack): enough to read a push's commands and to pass
receive-pack's answer through while holding back its status report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

FLUSH = b"0000"
KEEPALIVE = b"0005\x01"
MAX_DATA = 65516 - 4  # a pkt-line carries at most 65516 bytes after its length
BAND_DATA, BAND_PROGRESS, BAND_ERROR = 1, 2, 3


class PktError(ValueError):
    pass


def encode(payload: bytes) -> bytes:
    if len(payload) > MAX_DATA + 4:
        raise PktError("pkt-line too long")
    return b"%04x" % (len(payload) + 4) + payload


def read_pkt(stream: BinaryIO) -> bytes | None:
    """One packet's payload; None for a flush (or delim) packet."""
    head = _read_exact(stream, 4)
    try:
        size = int(head, 16)
    except ValueError:
        raise PktError(f"bad pkt-line length {head!r}") from None
    if size in (0, 1, 2):
        return None
    if size < 4:
        raise PktError(f"bad pkt-line length {size}")
    return _read_exact(stream, size - 4)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise PktError("the stream ended inside a pkt-line")
        data += chunk
    return data


def sideband_limit(capabilities: set[str]) -> int:
    """The most data one side-band packet may carry for this client (0: the
    client asked for no side-band)."""
    if "side-band-64k" in capabilities:
        return MAX_DATA - 1
    return 999 - 4 - 1 if "side-band" in capabilities else 0


def sideband(band: int, data: bytes, limit: int = MAX_DATA - 1) -> Iterator[bytes]:
    """``data`` as side-band packets of ``band`` (split to fit ``limit``)."""
    for start in range(0, len(data), limit):
        yield encode(bytes([band]) + data[start : start + limit])


def progress(text: str, limit: int = MAX_DATA - 1) -> bytes:
    """A line git shows as ``remote: text``."""
    line = text.encode(errors="replace") + b"\n"
    return b"".join(sideband(BAND_PROGRESS, line, limit))


@dataclass(frozen=True)
class Command:
    old: str
    new: str
    ref: str


@dataclass(frozen=True)
class PushRequest:
    commands: list[Command]
    capabilities: set[str]


def read_push_commands(stream: BinaryIO) -> PushRequest:
    """The update commands at the head of a receive-pack request (up to the
    flush packet; the pack follows and is left unread in ``stream``)."""
    commands: list[Command] = []
    caps: set[str] = set()
    while True:
        payload = read_pkt(stream)
        if payload is None:
            break
        if payload.startswith(b"shallow "):
            continue
        line, _, cap_text = payload.rstrip(b"\n").partition(b"\0")
        if not commands:
            caps = set(cap_text.decode(errors="replace").split())
        parts = line.decode(errors="replace").split(" ")
        if len(parts) != 3:
            raise PktError(f"bad push command {line[:100]!r}")
        commands.append(Command(*parts))
        if len(commands) > 1000:
            raise PktError("too many refs in one push")
    return PushRequest(commands, caps)


def report_lines(data: bytes) -> list[str]:
    """The lines of a status report (the pkt-lines inside side-band 1)."""
    lines: list[str] = []
    pos = 0
    while pos + 4 <= len(data):
        size = int(data[pos : pos + 4], 16)
        if size == 0:
            pos += 4
            continue
        lines.append(data[pos + 4 : pos + size].decode(errors="replace").rstrip("\n"))
        pos += size
    return lines


def report_encode(lines: list[str]) -> bytes:
    return b"".join(encode(line.encode() + b"\n") for line in lines) + FLUSH


def report_reject(lines: list[str], ref: str, reason: str) -> list[str]:
    """The report with ``ok ref`` turned into ``ng ref reason`` (and the
    ``option`` lines report-status-v2 put after it dropped)."""
    out: list[str] = []
    skipping = False
    for line in lines:
        if line == f"ok {ref}":
            out.append(f"ng {ref} {reason}")
            skipping = True
            continue
        if skipping and line.startswith("option "):
            continue
        skipping = False
        out.append(line)
    return out
