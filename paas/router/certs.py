"""Checking an uploaded certificate and key before the router may serve them.

A tenant uploads both; nginx would refuse a key that does not match (and a
whole config with it), and browsers would refuse a certificate that is
expired or names another domain. So each of those is refused here, at
upload, with a message that says which. The PEM is parsed and written out
again, so nothing but certificates and a key ever reaches the router's
files. The chain is not checked against a trust store: a self-signed or
private-CA certificate is the owner's choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from paas.router.errors import CertificateRejected
from paas.router.routes import TlsCert, hostname_matches, validate_hostname

MAX_PEM_BYTES = 64 * 1024
MIN_RSA_BITS = 2048


def _as_bytes(pem: str | bytes, what: str) -> bytes:
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    if not data.strip():
        raise CertificateRejected(f"The {what} is empty: paste or upload the PEM text.")
    if len(data) > MAX_PEM_BYTES:
        raise CertificateRejected(f"The {what} is larger than {MAX_PEM_BYTES} bytes.")
    return data


def _load_chain(data: bytes) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateRejected(
            "The certificate is not a PEM certificate (-----BEGIN CERTIFICATE-----)."
        ) from None
    return chain


def _load_key(data: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateRejected(
            "The private key is protected by a passphrase: upload it unencrypted."
        ) from None
    except (ValueError, x509.UnsupportedGeneralNameType):
        raise CertificateRejected(
            "The private key is not a PEM private key (-----BEGIN PRIVATE KEY-----)."
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateRejected(
                f"The RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are needed."
            )
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    raise CertificateRejected("The private key must be an RSA or an EC (ECDSA) key.")


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise CertificateRejected(
            "The certificate has no subjectAltName extension; browsers ignore the "
            "common name, so it would not be trusted for any domain."
        ) from None
    return tuple(name.lower() for name in san.value.get_values_for_type(x509.DNSName))


def _check_dates(cert: x509.Certificate, now: datetime) -> None:
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        raise CertificateRejected(
            f"The certificate expired on {not_after:%Y-%m-%d %H:%M} UTC: upload a renewed one."
        )
    not_before = cert.not_valid_before_utc
    if not_before > now:
        raise CertificateRejected(
            f"The certificate is not valid before {not_before:%Y-%m-%d %H:%M} UTC."
        )


def tls_cert_load(
    *,
    cert_pem: str | bytes,
    key_pem: str | bytes,
    hostnames: Sequence[str],
    now: datetime | None = None,
) -> TlsCert:
    """A :class:`TlsCert` for ``hostnames``, or :class:`CertificateRejected`
    saying why not (mismatched key, expired, another domain, unreadable)."""
    now = now or datetime.now(UTC)
    chain = _load_chain(_as_bytes(cert_pem, "certificate"))
    key = _load_key(_as_bytes(key_pem, "private key"))
    leaf = chain[0]
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise CertificateRejected(
            "The private key does not belong to the certificate (their public keys "
            "differ): upload the key the certificate was issued for."
        )
    _check_dates(leaf, now)
    names = _dns_names(leaf)
    for hostname in hostnames:
        validate_hostname(hostname)
        if not any(hostname_matches(name, hostname) for name in names):
            raise CertificateRejected(
                f"The certificate does not cover {hostname}: it is for "
                f"{', '.join(names) or 'no DNS name'}."
            )
    return TlsCert(
        cert_pem="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        names=names,
        not_after=leaf.not_valid_after_utc,
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
    )
