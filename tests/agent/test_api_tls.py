"""The agent's API is HTTPS only, with a certificate of its own: made at the
first start in ROOT/tls (root's alone), kept across restarts, or the
operator's pair; plain HTTP gets no API; and a pinned client refuses another
certificate before sending a byte of its request."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_agent.api.tls import certificate_fingerprint, ensure_certificate, server_context
from runtime_agent.host.tls import (
    CertificateMismatch,
    PinnedHTTPSConnection,
    der_fingerprint,
    pem_fingerprint,
    pinned_context,
)
from tests.support.agent_harness import REPO, AgentProcess, cleanup
from tests.support.certs import self_signed

pytestmark = pytest.mark.root


@pytest.fixture
def agent(tmp_agent_root: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess.fresh(tmp_agent_root / "agent")
    try:
        yield proc
    finally:
        cleanup(proc)


def served_fingerprint(port: int) -> str:
    """The fingerprint of the certificate whatever listens on ``port`` presents."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with pinned_context().wrap_socket(raw) as tls:
        return der_fingerprint(tls.getpeercert(binary_form=True) or b"")


def test_the_agent_makes_its_certificate_at_first_start_and_keeps_it(agent):
    shutil.rmtree(agent.root / "tls")  # as on a host that never joined
    agent.start()
    tls = agent.root / "tls"
    assert (tls.stat().st_mode & 0o777, tls.stat().st_uid) == (0o700, 0)
    key = tls / "key.pem"
    assert (key.stat().st_mode & 0o777, key.stat().st_uid) == (0o600, 0)
    made = certificate_fingerprint(tls / "cert.pem")
    assert served_fingerprint(agent.port) == made == agent.fingerprint
    assert made in agent.stderr()  # the log says which certificate it serves

    assert agent.terminate() == 0
    agent.start()
    assert served_fingerprint(agent.port) == made


def test_plain_http_to_the_agent_port_gets_no_api(agent):
    agent.start()
    request = (
        f"GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {agent.token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as s:
        s.sendall(request)
        try:
            while chunk := s.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    assert not received.startswith(b"HTTP/")
    assert b"api_version" not in received
    assert agent.request("GET", "/v1/info")[0] == 200  # over TLS it answers


def test_it_serves_the_operators_certificate_and_key(tmp_agent_root: Path, tmp_path: Path):
    pem = self_signed("agent-7.example")
    cert, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    cert.write_text(pem.cert)
    key.write_text(pem.key)
    key.chmod(0o600)
    agent = AgentProcess.fresh(
        tmp_agent_root / "agent", PAAS_AGENT_TLS_CERT=str(cert), PAAS_AGENT_TLS_KEY=str(key)
    )
    try:
        agent.start()
        assert served_fingerprint(agent.port) == pem_fingerprint(pem.cert) == agent.fingerprint
        assert not (agent.root / "tls").exists()
    finally:
        cleanup(agent)


def agent_command(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_AGENT_")}
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_certificate_without_its_key_stops_the_agent_naming_both(tmp_path: Path):
    (tmp_path / "agent.crt").write_text(self_signed("a.example").cert)
    done = agent_command(
        "runtime_agent",
        {"PAAS_AGENT_ROOT": str(tmp_path / "root"), "PAAS_AGENT_TOKEN": "t" * 32,
         "PAAS_AGENT_TLS_CERT": str(tmp_path / "agent.crt")},
    )  # fmt: skip
    assert done.returncode == 2
    assert "PAAS_AGENT_TLS_CERT and PAAS_AGENT_TLS_KEY go together" in done.stderr


def test_the_operator_reads_the_fingerprint_the_agent_will_serve(tmp_path: Path):
    root = tmp_path / "root"
    done = agent_command("runtime_agent.api.tls", {"PAAS_AGENT_ROOT": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == certificate_fingerprint(root / "tls" / "cert.pem")
    again = agent_command("runtime_agent.api.tls", {"PAAS_AGENT_ROOT": str(root)})
    assert again.stdout == done.stdout  # made once, then reused


def test_a_pinned_client_sends_nothing_to_another_certificate(tmp_path: Path):
    cert, key = ensure_certificate(tmp_path / "tls")
    context = server_context(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(10)
            try:
                seen.append(tls.recv(4096))
            except (ssl.SSLError, OSError):
                seen.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    pinned = ":".join(["AB"] * 32)
    conn = PinnedHTTPSConnection("127.0.0.1", port, pin=pinned, timeout=10)
    with pytest.raises(CertificateMismatch) as caught:
        conn.request("GET", "/v1/info", headers={"Authorization": "Bearer secret-credential"})
    thread.join(10)
    listener.close()
    presented = certificate_fingerprint(cert)
    assert caught.value.message.startswith(
        f"the agent at 127.0.0.1:{port} presented a certificate with fingerprint "
        f"{presented}, pinned {pinned}"
    )
    assert seen == [b""]  # the handshake, then nothing: no request, no credential
