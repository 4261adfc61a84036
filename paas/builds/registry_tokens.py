"""Bearer tokens for the platform's registry (Distribution's ``auth: token``).

The registry trusts one certificate (``rootcertbundle``); whoever holds its
private key (the control plane) signs JSON Web Tokens that say which
repositories the bearer may pull from or push to. That lets the control
plane hand an agent a token for ONE repository (``repository:<app>:pull``)
that expires in minutes, instead of the registry's password: a token taken
from an agent reads that app's image and nothing else, and not for long.

The builder, the pruner and the deploy-from-image check mint their own
tokens with the rights the registry asks for (the worker holds the key), so
no token endpoint has to be up for the platform to push; the registry's
``realm`` is served by ``paas.builds.registry_realm`` for people and tools
(``docker login``).

Signed ES256 with the certificate in the ``x5c`` header: Distribution 2.8
checks the chain against its rootcertbundle, where the certificate itself is.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from runtime_agent.images.refs import REPOSITORY_RE

ISSUER = "paas"
SERVICE = "paas-registry"
PULL = ("pull",)
ACTIONS = frozenset({"pull", "push", "delete", "*"})
_RESOURCE_TYPES = frozenset({"repository", "registry"})


class BadScope(ValueError):
    """A scope string that is not ``type:name:action[,action]``."""


@dataclass(frozen=True)
class Access:
    type: str  # "repository" or "registry"
    name: str  # "my-app", or "catalog"
    actions: tuple[str, ...]

    def as_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scopes(scope: str) -> list[Access]:
    """``repository:a:pull,push registry:catalog:*`` (space-separated, as a
    registry's challenge and a token request carry them)."""
    out = []
    for part in scope.split():
        kind, _, rest = part.partition(":")
        name, _, actions = rest.rpartition(":")
        wanted = tuple(a for a in actions.split(",") if a)
        if kind not in _RESOURCE_TYPES or not name or not wanted or set(wanted) - ACTIONS:
            raise BadScope(f"bad scope {part!r}")
        if kind == "repository" and not REPOSITORY_RE.fullmatch(name):
            raise BadScope(f"bad repository name in scope {part!r}")
        out.append(Access(kind, name, wanted))
    return out


def pull_access(repository: str) -> list[Access]:
    if not REPOSITORY_RE.fullmatch(repository):
        raise BadScope(f"bad repository name {repository!r}")
    return [Access("repository", repository, PULL)]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenSigner:
    """Signs registry tokens with the key whose certificate the registry trusts."""

    def __init__(
        self, key_file: Path, cert_file: Path, *, issuer: str = ISSUER, service: str = SERVICE
    ) -> None:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{key_file}: the registry token key must be an EC P-256 key")
        self._key = key
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.issuer = issuer
        self.service = service

    def mint(self, access: list[Access], *, subject: str, ttl_s: int) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + ttl_s,
            "nbf": now - 30,  # a little clock skew between hosts
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": [a.as_claim() for a in access],
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JWS wants raw r||s, not DER
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def token_claims(token: str) -> dict[str, object]:
    """The claims of a token (NOT verified: for logs and tests only)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token):
        raise ValueError("not a JWT")
    payload = token.split(".")[1]
    data: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return data


def make_token_keypair(directory: Path, *, days: int) -> tuple[Path, Path]:
    """A fresh P-256 key and a self-signed certificate for it (the registry's
    rootcertbundle), written 0600/0640 under ``directory``."""
    import datetime
    import os

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "paas registry tokens")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / "token-key.pem", directory / "token-cert.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for path, data, mode in (
        (key_file, key_pem, 0o600),
        (cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o640),
    ):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return key_file, cert_file
