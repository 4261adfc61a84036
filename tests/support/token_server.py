"""A tiny bearer-token server for Distribution's ``auth: token`` mode, so the
registry client's token flow is tested against the real registry.

It checks basic-auth credentials and answers a JWT for the scopes asked,
signed by the platform's own :class:`paas.builds.registry_tokens.TokenSigner`
(the registry trusts its certificate as ``rootcertbundle``): the tokens the
control plane mints for agents are checked by the same registry.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from paas.builds.registry_tokens import TokenSigner, parse_scopes


@dataclass
class TokenServer:
    url: str  # the realm
    issued: list[str] = field(default_factory=list)  # scopes granted, in order


@contextmanager
def run_token_server(
    tls: tuple[Path, Path],
    signer: TokenSigner,
    username: str,
    password: str,
    address: str = "127.0.0.1",
) -> Iterator[TokenServer]:
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    state = TokenServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            if self.headers.get("Authorization") != expected:
                self._answer(401, {"details": "bad credentials"})
                return
            scopes = query.get("scope", [])
            access = [a for scope in scopes for a in parse_scopes(scope)]
            state.issued.extend(scopes)
            token = signer.mint(access, subject=username, ttl_s=300)
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

    server = ThreadingHTTPServer((address, 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    state.url = f"https://{address}:{server.server_address[1]}/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
