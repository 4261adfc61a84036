"""The agent's own TLS certificate: made once, kept, served.

The API is reached over networks other hosts share, so it is only served
over TLS. Nothing needs to vouch for the certificate: the control plane pins
its SHA-256 fingerprint when the agent joins (``runtime_agent/host/tls.py``)
and refuses any other. So, unless the operator gives a certificate and key
(``PAAS_AGENT_TLS_CERT`` / ``PAAS_AGENT_TLS_KEY``), the agent makes a
self-signed one at its first start, in ``ROOT/tls/`` (0700; key 0600), and
reuses it on every start after: its fingerprint, hence the pin, stays.

The pair is made in a scratch directory and renamed into place in one step,
so ``python -m runtime_agent.join`` and a starting agent racing each other
end up with one pair, never a key of one and a certificate of the other.
An ECDSA P-256 key takes a millisecond to make: a first start stays fast.

``python -m runtime_agent.api.tls`` prints the fingerprint (making the pair if
there is none yet), with the agent's own settings: what an operator compares
with the pin the control plane shows.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import shutil
import socket
import ssl
import stat
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runtime_agent.config import PREFIX, ConfigError, tls_settings
from runtime_agent.host.settings import Settings
from runtime_agent.host.tls import pem_fingerprint

log = logging.getLogger("runtime_agent.tls")

CERT_NAME, KEY_NAME = "cert.pem", "key.pem"
# Clients check the pin, never the dates; the dates only have to be valid X.509.
VALIDITY = timedelta(days=3650)


def _self_signed() -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new self-signed ECDSA P-256 pair.

    cryptography is imported here, once per host: an agent that serves the
    pair it already has never loads it (~6 MiB of an idle agent)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    loopback: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.IPAddress(ipaddress.IPv6Address("::1")),
    ]
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = f"paas-agent {socket.gethostname()}"[:64]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        # Not for the platform (it pins, names do not matter): so that an
        # operator on the host can `curl --cacert ROOT/tls/cert.pem https://127.0.0.1:7070`.
        .add_extension(x509.SubjectAlternativeName(loopback), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def ensure_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) in ``directory``, made now if it holds none."""
    cert, key = directory / CERT_NAME, directory / KEY_NAME
    if cert.is_file() and key.is_file():
        return cert, key
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = Path(tempfile.mkdtemp(prefix=".tls-", dir=directory.parent))  # 0700
    try:
        cert_pem, key_pem = _self_signed()
        _write(scratch / KEY_NAME, key_pem, 0o600)
        _write(scratch / CERT_NAME, cert_pem, 0o644)
        try:
            os.rename(scratch, directory)
        except OSError as exc:
            # Someone else's pair got there first (or an empty directory is in
            # the way, left by hand): keep theirs, or say what is wrong.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not cert.is_file():
                raise ConfigError(
                    f"cannot make the agent's certificate in {directory}: {exc}"
                ) from None
            return cert, key
        log.warning("made the agent's TLS certificate %s (fingerprint %s)",
                    cert, pem_fingerprint(cert_pem))  # fmt: skip
        return cert, key
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def certificate_paths(root: Path, cert: Path | None, key: Path | None) -> tuple[Path, Path]:
    """The operator's pair when configured, else the agent's own (made if missing)."""
    if cert is not None and key is not None:
        mode = stat.S_IMODE(key.stat().st_mode)
        if mode & 0o077:
            log.warning("the agent's TLS key %s is readable by others (mode %o)", key, mode)
        return cert, key
    return ensure_certificate(root / "tls")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for the pair; a pair that does not load stops the agent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the agent's TLS certificate {cert} with key {key}: {exc}"
        ) from None
    return context


def certificate_fingerprint(cert: Path) -> str:
    try:
        return pem_fingerprint(cert.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the agent's TLS certificate {cert}: {exc}") from None


def configured_fingerprint(env: dict[str, str] | None = None) -> str:
    """The fingerprint of the certificate the agent with this environment serves."""
    read = Settings(os.environ if env is None else env, PREFIX)
    root, cert, key = tls_settings(read)
    return certificate_fingerprint(certificate_paths(root, cert, key)[0])


def main() -> int:
    try:
        print(configured_fingerprint())
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
