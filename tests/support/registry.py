"""Start a REAL Distribution registry (``docker-registry`` from Debian) for a
test, on a free loopback port, with htpasswd basic auth over TLS.

Why TLS although Distribution 2.8 accepts htpasswd over plain HTTP: python-dxf
refuses to send credentials over plain HTTP (``DXFAuthInsecureError``), and a
password in clear text is not what production should do either. So every run
gets a fresh self-signed certificate (made with ``openssl``) for 127.0.0.1,
and clients trust it through ``ca_file``.

Usage::

    with run_registry(tmp_path) as reg:
        client = RegistryClient(reg.host, username=reg.username,
                                password=reg.password, scheme="https",
                                ca_file=str(reg.ca_file))
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paas.builds.registry_server import (
    TokenAuth,
    bcrypt_htpasswd_line,
    config_lines,
    make_self_signed_cert,
)
from paas.builds.registry_tokens import TokenSigner, make_token_keypair
from runtime_agent.images.registry import RegistryClient
from tests.support.processes import free_port, start_process, stop_process, wait_until

REGISTRY_BINARY = "/usr/bin/docker-registry"
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class TestRegistry:
    """A running registry. ``host`` is what image references start with."""

    __test__ = False  # not a pytest test class despite the name

    host: str  # "127.0.0.1:PORT"
    url: str  # "https://127.0.0.1:PORT"
    scheme: str  # "https" or "http"
    username: str | None
    password: str | None
    ca_file: Path | None
    storage_dir: Path
    log_path: Path
    pid: int
    tokens_issued: list[str] | None = None  # scopes the token server granted
    # auth: token: the key and certificate the registry trusts (the
    # control plane's settings PAAS_REGISTRY_TOKEN_KEY / _CERT).
    token_key: Path | None = None
    token_cert: Path | None = None

    def signer(self) -> TokenSigner:
        assert self.token_key and self.token_cert, "not a registry in token mode"
        return TokenSigner(self.token_key, self.token_cert)

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (tests corrupt it there)."""
        algo, hexd = digest.split(":", 1)
        return self.storage_dir / "docker/registry/v2/blobs" / algo / hexd[:2] / hexd / "data"

    def access_log(self) -> list[str]:
        """The registry's access-log lines so far (one per HTTP request)."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if re.match(r"^\S+ - \S+ \[", line)]

    def blob_gets(self, repository: str | None = None) -> list[str]:
        """Access-log lines of successful blob downloads (GET .../blobs/sha256:...)."""
        pattern = re.compile(
            r'"GET /v2/(?P<repo>.+?)/blobs/sha256:[0-9a-f]{64} HTTP/[0-9.]+" (200|206|307) '
        )
        out = []
        for line in self.access_log():
            m = pattern.search(line)
            if m and (repository is None or m.group("repo") == repository):
                out.append(line)
        return out

    def client(self, *, password: str | None = None) -> RegistryClient:
        """A client for this registry with the right credentials (or the
        given wrong ``password``). Close it, or use it in a ``with``."""
        return RegistryClient(
            self.host,
            username=self.username,
            password=password if password is not None else self.password,
            scheme=self.scheme,
            ca_file=str(self.ca_file) if self.ca_file else None,
        )

    def agent_env(self) -> dict[str, str]:
        """An agent's settings to pull from this registry with its credentials."""
        return {
            "PAAS_AGENT_REGISTRY": self.host,
            "PAAS_AGENT_REGISTRY_USER": self.username or "",
            "PAAS_AGENT_REGISTRY_PASSWORD": self.password or "",
            "PAAS_AGENT_REGISTRY_CA": str(self.ca_file or ""),
        }

    def credentials(self, registry: str) -> tuple[str, str] | None:
        """A credentials callback for ``images.ImageStore``."""
        if registry == self.host and self.username and self.password:
            return self.username, self.password
        return None


def _write_config(
    workdir: Path,
    port: int,
    htpasswd: Path | None,
    tls: tuple[Path, Path] | None,
    token: TokenAuth | None = None,
    address: str = "127.0.0.1",
) -> Path:
    lines = config_lines(
        storage_dir=workdir / "storage",
        addr=f"{address}:{port}",
        http_secret=secrets.token_hex(16),
        tls=tls,
        htpasswd=htpasswd,
        realm="paas-test",
        token=token,
    )
    config = workdir / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _wait_until_answering(url: str, ca_file: Path | None, proc: subprocess.Popen[bytes]) -> None:
    ctx = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/v2/", timeout=2, context=ctx):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # auth required: it is up
        except OSError:
            return False

    try:
        wait_until(answers, timeout_s=START_TIMEOUT_S, what=f"docker-registry on {url}")
    except TimeoutError as exc:
        raise RuntimeError(str(exc)) from None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc)


@contextlib.contextmanager
def run_registry(
    workdir: Path,
    *,
    auth: bool = True,
    tls: bool = True,
    token: bool = False,
    username: str = "alice",
    password: str | None = None,
    address: str = "127.0.0.1",
    cert_key: tuple[Path, Path] | None = None,
) -> Iterator[TestRegistry]:
    """Run ``docker-registry serve`` in ``workdir`` until the block ends.

    ``address`` is where it listens (and what its certificate names): a
    test's own namespaced hosts cannot reach the root namespace's loopback.

    ``auth`` is htpasswd basic auth; ``token=True`` instead makes the
    registry trust tokens signed by a fresh key (``TestRegistry.signer()``,
    like the control plane's) and puts a realm in front that grants what is
    asked to ``username``/``password`` (tests/support/token_server.py).
    ``cert_key``: reuse a TLS certificate (for ``address``) instead of making
    one, so clients trusting one CA file reach two registries.
    The process is started directly with Popen (not ``runtime_agent.cmd.run``,
    which waits for commands to finish) and stopped by its PID.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(12)
    htpasswd = None
    if auth and not token:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(bcrypt_htpasswd_line(username, password))
    if cert_key is None and (tls or token):
        cert_key = make_self_signed_cert(workdir, address)
    with contextlib.ExitStack() as stack:
        issued = None
        token_auth = None
        token_files: tuple[Path | None, Path | None] = (None, None)
        if token:
            from tests.support.token_server import run_token_server

            assert cert_key
            token_files = make_token_keypair(workdir, days=2)
            signer = TokenSigner(*token_files)
            server = stack.enter_context(
                run_token_server(cert_key, signer, username, password, address)
            )
            issued = server.issued
            token_auth = TokenAuth(realm=server.url, cert_file=token_files[1])
        user = username if auth or token else None
        registry = stack.enter_context(
            _serve(workdir, htpasswd, cert_key, token_auth, user, password, address)
        )
        yield dataclasses.replace(
            registry, tokens_issued=issued, token_key=token_files[0], token_cert=token_files[1]
        )


@contextlib.contextmanager
def _serve(
    workdir: Path,
    htpasswd: Path | None,
    cert_key: tuple[Path, Path] | None,
    token: TokenAuth | None,
    username: str | None,
    password: str,
    address: str = "127.0.0.1",
) -> Iterator[TestRegistry]:
    scheme = "https" if cert_key else "http"
    log_path = workdir / "registry.log"
    # A port picked by binding 0 can be taken by someone else before the
    # registry binds it: retry a few times with a new one.
    for _attempt in range(5):
        port = free_port()
        config = _write_config(workdir, port, htpasswd, cert_key, token, address)
        with open(log_path, "ab") as log:
            proc = start_process(
                [REGISTRY_BINARY, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in pytest must not race our stop
            )
        url = f"{scheme}://{address}:{port}"
        try:
            _wait_until_answering(url, cert_key[0] if cert_key else None, proc)
            break
        except RuntimeError:
            _stop(proc)
            if "address already in use" not in log_path.read_text(errors="replace"):
                raise
    else:
        raise RuntimeError("could not find a free port for docker-registry")
    try:
        yield TestRegistry(
            host=f"{address}:{port}",
            url=url,
            scheme=scheme,
            username=username,
            password=password if username else None,
            ca_file=cert_key[0] if cert_key else None,
            storage_dir=workdir / "storage",
            log_path=log_path,
            pid=proc.pid,
        )
    finally:
        _stop(proc)
