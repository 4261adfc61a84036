"""An agent's TLS identity as its clients see it: a pinned certificate.

Agents serve their API over TLS with a certificate of their own (usually
self-signed, made at the agent's first start). Nothing vouches for it but
the control plane's memory: the SHA-256 fingerprint of the certificate the
agent presented when it joined (its *pin*). Every client then checks the
peer's certificate against that pin right after the handshake, before a
byte of the request (and so the bearer credential) is sent. No CA, no
hostname: agents are reached by address, often a private one no public CA
would certify, and a pin says more than a CA could ("this very agent").

Fingerprints are written as ``openssl x509 -noout -fingerprint -sha256``
writes them (``AB:CD:...``, 32 bytes), so an operator can compare what the
control plane shows with what the agent's host says. :func:`parse_fingerprint`
also takes the bare hex form, any case, with or without a ``sha256:`` prefix.

Part of the host toolkit: the control plane and the tests use it; the
daemon's own side (making the certificate, serving) is in
``runtime_agent/api/tls.py``.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import ssl
from typing import Any

from runtime_agent.host.errors import HostError

_HEX64 = re.compile(r"[0-9a-f]{64}")


class CertificateMismatch(HostError):
    """The agent's certificate is not the one pinned: it is not trusted."""

    code = "certificate_mismatch"
    permanent = True


class BadFingerprint(HostError):
    code = "bad_fingerprint"
    permanent = True


def der_fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, ``AB:CD:...``."""
    return _colons(hashlib.sha256(der).hexdigest())


def pem_fingerprint(pem: str | bytes) -> str:
    """The fingerprint of the first certificate in ``pem``."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    try:
        der = ssl.PEM_cert_to_DER_cert(text)
    except ValueError as exc:
        raise BadFingerprint(f"not a PEM certificate: {exc}") from None
    return der_fingerprint(der)


def parse_fingerprint(text: str) -> str:
    """``text`` in the canonical ``AB:CD:...`` form, or BadFingerprint."""
    value = text.strip().lower()
    for prefix in ("sha256 fingerprint=", "sha256:", "sha256="):
        value = value.removeprefix(prefix)
    bare = value.replace(":", "")
    if not _HEX64.fullmatch(bare):
        raise BadFingerprint(
            "a certificate fingerprint is the SHA-256 of the certificate: "
            f"64 hex digits (colons allowed), got {text[:120]!r}"
        )
    return _colons(bare)


def fingerprint_bytes(fingerprint: str) -> bytes:
    """The 32 bytes of a fingerprint (what aiohttp's ``Fingerprint`` takes)."""
    return bytes.fromhex(parse_fingerprint(fingerprint).replace(":", ""))


def _colons(hexdigest: str) -> str:
    upper = hexdigest.upper()
    return ":".join(upper[i : i + 2] for i in range(0, len(upper), 2))


def mismatch(where: str, presented: str, pinned: str) -> CertificateMismatch:
    return CertificateMismatch(
        f"the agent at {where} presented a certificate with fingerprint {presented}, "
        f"pinned {pinned}: it is not trusted (if its certificate was replaced on "
        "purpose, re-join the host)",
        presented=presented,
        pinned=pinned,
    )


def pinned_context() -> ssl.SSLContext:
    """A client context that checks no CA and no name: the pin does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that refuses a peer whose certificate is not the
    pinned one, before anything is sent on it."""

    def __init__(
        self, host: str, port: int | None = None, *, pin: str, where: str = "", **kwargs: Any
    ) -> None:
        super().__init__(host, port, context=pinned_context(), **kwargs)
        self.pin = parse_fingerprint(pin)
        self.where = where or f"{host}:{port}"

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True) or b""
        presented = der_fingerprint(der)
        if presented != self.pin:
            self.close()
            raise mismatch(self.where, presented, self.pin)
