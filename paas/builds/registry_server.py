"""The platform's own registry: configuration for the Distribution server
(``docker-registry`` from Debian) with token auth over TLS.

Token auth (``auth: token``): the registry trusts JWTs signed with a key
only the control plane's worker holds (registry_tokens.py). The worker
mints its own push tokens; each agent gets a pull token for one repository
with each create, so no agent holds a password of the registry. (An older
setup made with htpasswd auth is moved to token auth by the next
``prepare``; its password stays in setup.json, unused by the registry.)

TLS even on loopback because python-dxf (our registry client) refuses to
send credentials over plain HTTP, and a clear-text password is not what a
deployment should do either. The certificate is self-signed for the
registry's address; clients trust it through ``ca_file``.

Used by ``manage.py setup_registry`` (scripts/up) and by the tests' registry
fixture, so both run the registry the same way.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import bcrypt

from paas.builds.registry_tokens import ISSUER, SERVICE, make_token_keypair
from runtime_agent.host.cmd import run
from runtime_agent.host.private import private_dir

CERT_DAYS = 825


def bcrypt_htpasswd_line(username: str, password: str) -> str:
    """An htpasswd entry Distribution accepts (bcrypt only). Cost 4, the
    minimum: the registry re-checks the hash on EVERY request, and cost 12
    costs about 240 ms each time."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{username}:{hashed}\n"


def make_self_signed_cert(
    directory: Path, host: str = "127.0.0.1", days: int = 2
) -> tuple[Path, Path]:
    """An EC certificate for ``host`` (an IP SAN: Go ignores the CN)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    san = f"IP:{host}" if re.fullmatch(r"[0-9.]+", host) else f"DNS:{host}"
    run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", str(days),
            "-subj", f"/CN={host}", "-addext", f"subjectAltName={san},DNS:localhost",
        ],
        timeout=30,
    )  # fmt: skip
    os.chmod(key, 0o600)
    return cert, key


@dataclass(frozen=True)
class TokenAuth:
    """Distribution's ``auth: token``: tokens signed by the key whose
    certificate is ``rootcertbundle`` (see paas.builds.registry_tokens)."""

    realm: str  # where clients without a token are sent for one
    cert_file: Path
    service: str = SERVICE
    issuer: str = ISSUER


def config_lines(
    *,
    storage_dir: Path,
    addr: str,
    http_secret: str,
    tls: tuple[Path, Path] | None,
    htpasswd: Path | None,
    realm: str = "paas",
    token: TokenAuth | None = None,
) -> list[str]:
    lines = [
        "version: 0.1",
        "log: {level: info, formatter: text}",
        f"storage: {{filesystem: {{rootdirectory: {storage_dir}}}, "
        "delete: {enabled: true}, maintenance: {uploadpurging: {enabled: false}}}",
        "http:",
        f"  addr: {addr}",
        f"  secret: {http_secret}",
    ]
    if tls:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if token:
        lines += [
            "auth:",
            "  token:",
            f"    realm: {token.realm}",
            f"    service: {token.service}",
            f"    issuer: {token.issuer}",
            f"    rootcertbundle: {token.cert_file}",
        ]
    elif htpasswd:
        lines += ["auth:", "  htpasswd:", f"    realm: {realm}", f"    path: {htpasswd}"]
    return lines


@dataclass(frozen=True)
class RegistrySetup:
    host: str  # what image references start with: "127.0.0.1:5000"
    username: str
    password: str
    ca_file: str
    config_file: str
    token_key: str = ""  # signs the registry's tokens (root's alone)
    token_cert: str = ""  # the registry's rootcertbundle


def prepare(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    realm: str = "http://127.0.0.1:8000/registry/token",
) -> RegistrySetup:
    """Write (once) the certificate, token key and config of the platform's
    registry under ``directory``; later calls reuse them, so images and
    clients configured earlier keep working. ``realm``: where a client
    without a token is sent (the panel's /registry/token explains itself)."""
    # The registry itself runs as the service user (scripts/up gives these
    # files its group): it reads config, certificate, key and the token
    # certificate; the token key and what the worker reads stay root's.
    private_dir(directory, 0o750)
    state = directory / "setup.json"
    if state.exists():
        setup = RegistrySetup(**json.loads(state.read_text()))
        if not setup.token_key:
            setup = _move_to_token_auth(directory, setup, realm)
        _write_agent_env(directory, setup)  # rewritten: newer agents read more of it
        return setup
    password = secrets.token_urlsafe(24)
    cert, _key = make_self_signed_cert(directory, host, days=CERT_DAYS)
    for path in (cert, _key):
        os.chmod(path, 0o640)
    config = directory / "config.yml"
    setup = RegistrySetup(f"{host}:{port}", "paas", password, str(cert), str(config))
    _write_private(directory / "password", password)
    return _move_to_token_auth(directory, setup, realm)


def _move_to_token_auth(directory: Path, setup: RegistrySetup, realm: str) -> RegistrySetup:
    """Make the token key and write the registry's config with token auth."""
    token_key, token_cert = make_token_keypair(directory, days=CERT_DAYS)
    lines = config_lines(
        storage_dir=directory / "storage",
        addr=setup.host,
        http_secret=secrets.token_hex(16),
        tls=(Path(setup.ca_file), Path(setup.ca_file).with_name("key.pem")),
        htpasswd=None,
        token=TokenAuth(realm=realm, cert_file=token_cert),
    )
    _write_private(Path(setup.config_file), "\n".join(lines) + "\n", 0o640)
    setup = replace(setup, token_key=str(token_key), token_cert=str(token_cert))
    _write_agent_env(directory, setup)
    _write_private(directory / "setup.json", json.dumps(asdict(setup)))
    return setup


def _write_agent_env(directory: Path, setup: RegistrySetup) -> None:
    """What the runtime agent needs to pull (an env file scripts/up passes to
    the Procfile's processes): the registry's CA, and no credential: the
    control plane sends a pull token for one repository with each create."""
    _write_private(
        directory / "agent.env",
        f"PAAS_AGENT_REGISTRY_CA={setup.ca_file}\nPAAS_REGISTRY_CONFIG={setup.config_file}\n",
    )


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Files holding secrets: private from the start (root's alone by default)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@dataclass(frozen=True)
class GarbageCollection:
    blobs_deleted: int
    manifests_deleted: int


def registry_garbage_collect(
    config_file: Path, *, binary: str = "docker-registry", timeout: float = 1800
) -> GarbageCollection:
    """``registry garbage-collect`` on the registry's storage: blobs no
    manifest references are deleted. The caller makes sure no push is in
    flight (engine.housekeeping.registry_push_lock). Manifests that lost
    their tags are kept: a deploy may pin one by digest."""
    proc = run([binary, "garbage-collect", str(config_file)], timeout=timeout)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    return GarbageCollection(
        blobs_deleted=len(re.findall(r"^blob eligible for deletion", out, re.M)),
        manifests_deleted=len(re.findall(r"^manifest eligible for deletion", out, re.M)),
    )


def registry_storage_dir(config_file: Path) -> Path | None:
    """The filesystem root the registry's config names, if it names one."""
    try:
        text = config_file.read_text()
    except OSError:
        return None
    match = re.search(r"rootdirectory:\s*([^}\s,]+)", text)
    return Path(match.group(1)) if match else None


def uploads_in_flight(storage: Path, *, within_s: float) -> list[Path]:
    """Blob uploads the registry has open (``<repo>/_uploads/<id>``) that
    moved within ``within_s`` seconds: a push, ours or anyone's, is under
    way. Older ones are pushes that died (the registry purges none here)."""
    root = storage / "docker" / "registry" / "v2" / "repositories"
    cutoff = time.time() - within_s
    found = []
    for dirpath, dirnames, _files in os.walk(root):
        if os.path.basename(dirpath) != "_uploads":
            continue
        for upload in dirnames:
            path = Path(dirpath) / upload
            newest = max(
                (f.lstat().st_mtime for f in path.iterdir()), default=path.lstat().st_mtime
            )
            if newest >= cutoff:
                found.append(path)
        dirnames[:] = []  # nothing to find below an upload
    return found
