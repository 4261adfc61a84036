"""The agent hands its registry credentials only to the registry they are
for: an image reference naming another host (a tenant can put any name in
a Dockerfile or an API call) must not make the agent send them there."""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from paas.builds.registry_server import make_self_signed_cert
from runtime_agent.config import AgentConfig
from runtime_agent.host.errors import HostError
from runtime_agent.images.store import ImageStore

PASSWORD = "s3cret-registry-password"


class Recorder(BaseHTTPRequestHandler):
    """A registry that wants credentials for everything, and writes down
    every Authorization header it is sent."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization") or "")
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="registry"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "tls").mkdir()
    return make_self_signed_cert(tmp_path / "tls")


@pytest.fixture
def listener(tls: tuple[Path, Path]) -> Iterator[str]:
    """HTTPS, as the client sends credentials over nothing else."""
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def pull_from(host: str, configured_for: str, root: Path, ca: Path) -> None:
    config = AgentConfig.from_env(
        {
            "PAAS_AGENT_ROOT": str(root),
            "PAAS_AGENT_TOKEN": "t" * 32,
            "PAAS_AGENT_REGISTRY": configured_for,
            "PAAS_AGENT_REGISTRY_USER": "paas",
            "PAAS_AGENT_REGISTRY_PASSWORD": PASSWORD,
        }
    )
    store = ImageStore(root / "store", credentials=config.registry_credentials, ca_file=str(ca))
    with pytest.raises(HostError):
        store.pull(f"{host}/someone/else:1")


def sent_password() -> bool:
    for header in Recorder.seen:
        if header.startswith("Basic ") and PASSWORD in base64.b64decode(header[6:]).decode():
            return True
    return False


def test_it_sends_no_credentials_to_another_registry(
    listener: str, tmp_path: Path, tls: tuple[Path, Path]
) -> None:
    pull_from(listener, "127.0.0.1:1", tmp_path, tls[0])
    assert Recorder.seen  # it did ask that host (anonymously)
    assert not sent_password()


def test_it_sends_them_to_its_own_registry(
    listener: str, tmp_path: Path, tls: tuple[Path, Path]
) -> None:
    pull_from(listener, listener, tmp_path, tls[0])
    assert sent_password()
