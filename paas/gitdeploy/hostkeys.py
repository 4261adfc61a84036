"""The ssh host keys an app's repository host must present (webhook fetches).

A key is what ``ssh-keyscan HOST`` prints, with or without the host field:
``ssh-ed25519 AAAAC3Nz...``. It is checked strictly: a key type OpenSSH
accepts for host keys, standard base64, and a blob that names the same type
(so a pasted key of one type under another's name is refused, not silently
useless). Certificates authorities and revocation markers (``@cert-authority``,
``@revoked``) are not accepted: a pin is a plain key.

The keys are either set by the operator (``operator``) or, when none was
set, the ones the first successful fetch saw (``first_use``): trust on first
use, then pinned. Either way every fetch checks them with
``StrictHostKeyChecking=yes`` (paas/gitdeploy/fetch.py).
"""

from __future__ import annotations

import base64
import binascii
import struct

from django.db import models

from paas.core.errors import ValidationFailed

KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})  # fmt: skip
MAX_KEYS = 16
MAX_LINE = 16 * 1024
FIELD = "ssh_host_keys"
EXAMPLE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... (a line of `ssh-keyscan HOST`)"


class HostKeyOrigin(models.TextChoices):
    OPERATOR = "operator", "set on the app's git page"
    FIRST_USE = "first_use", "recorded at the first fetch"


def host_keys_validate(text: str) -> list[str]:
    """The keys in ``text`` as ``TYPE BASE64`` lines, or a clear error.
    Blank lines and ``#`` comments are skipped; an empty text is no keys."""
    if len(text) > MAX_KEYS * MAX_LINE or "\x00" in text:
        raise ValidationFailed("The ssh host keys are too long.", field=FIELD)
    keys: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key = _key_of_line(line, number)
        if key not in keys:
            keys.append(key)
    if len(keys) > MAX_KEYS:
        raise ValidationFailed(f"At most {MAX_KEYS} ssh host keys.", field=FIELD)
    return keys


def _key_of_line(line: str, number: int) -> str:
    words = line.split()
    if words[0].startswith("@"):
        raise ValidationFailed(
            f"Line {number}: {words[0]} lines are not accepted; give plain host keys "
            f"({EXAMPLE}).", field=FIELD,
        )  # fmt: skip
    if words[0] not in KEY_TYPES and len(words) >= 3:
        words = words[1:]  # ssh-keyscan's host field (or a known_hosts line's)
    kind, blob = words[0], words[1] if len(words) > 1 else ""
    if kind not in KEY_TYPES:
        raise ValidationFailed(
            f"Line {number}: {kind[:40]!r} is not an ssh host key type (one of "
            f"{', '.join(sorted(KEY_TYPES))}); expected {EXAMPLE}.", field=FIELD,
        )  # fmt: skip
    if _blob_type(blob) != kind:
        raise ValidationFailed(
            f"Line {number}: the {kind} key is not valid base64 of a {kind} key "
            f"(copy the whole line of `ssh-keyscan`).", field=FIELD,
        )  # fmt: skip
    return f"{kind} {blob}"


def _blob_type(blob: str) -> str | None:
    """The key type a key blob names (its first SSH string), if it decodes."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 4:
        return None
    (length,) = struct.unpack(">I", raw[:4])
    if length > 64 or len(raw) < 4 + length + 4:  # a type name, then key material
        return None
    try:
        return raw[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def known_hosts_text(alias: str, keys: list[str]) -> str:
    """A known_hosts file pinning ``keys`` for ``alias`` (ssh's HostKeyAlias)."""
    return "".join(f"{alias} {key}\n" for key in keys)


def keys_seen(known_hosts: str, alias: str) -> list[str]:
    """The keys ssh wrote for ``alias`` when it accepted them on first use."""
    found = [
        " ".join(line.split()[1:3])
        for line in known_hosts.splitlines()
        if line.split()[:1] == [alias] and len(line.split()) >= 3
    ]
    return host_keys_validate("\n".join(found))
