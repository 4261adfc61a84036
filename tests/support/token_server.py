"""A tiny bearer-token server for Distribution's ``auth: token`` mode, so the
registry client's token flow is tested against the real registry.

It checks basic-auth credentials and answers a JWT signed (ES256) with the
same throwaway EC key as the registry's TLS certificate; the registry
trusts that certificate as its ``rootcertbundle`` and finds it in the
token's ``x5c`` header. Uses ``cryptography`` (already in the venv through
the Channels stack) for the signature.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

SERVICE = "paas-test-registry"
ISSUER = "paas-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    url: str  # the realm
    issued: list[str] = field(default_factory=list)  # scopes granted, in order


def _sign_jwt(claims: dict[str, object], key: ec.EllipticCurvePrivateKey, cert_der: bytes) -> str:
    header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(cert_der).decode()]}
    signing_input = (
        _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
    )
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)  # JWS wants raw r||s, not DER
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _access(scopes: list[str]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for scope in scopes:
        for part in scope.split():
            kind, _, rest = part.partition(":")
            name, _, actions = rest.rpartition(":")
            out.append({"type": kind, "name": name, "actions": actions.split(",")})
    return out


@contextmanager
def run_token_server(cert: Path, key: Path, username: str, password: str) -> Iterator[TokenServer]:
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    private: ec.EllipticCurvePrivateKey = loaded
    cert_der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    state = TokenServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            if self.headers.get("Authorization") != expected:
                self._answer(401, {"details": "bad credentials"})
                return
            now = int(time.time())
            scopes = query.get("scope", [])
            claims = {
                "iss": ISSUER,
                "sub": username,
                "aud": query.get("service", [SERVICE])[0],
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": secrets.token_hex(8),
                "access": _access(scopes),
            }
            state.issued.extend(scopes)
            token = _sign_jwt(claims, private, cert_der)
            self._answer(200, {"token": token, "access_token": token, "expires_in": 300})

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    state.url = f"https://127.0.0.1:{server.server_address[1]}/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
