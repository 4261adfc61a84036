"""A custom domain with an uploaded certificate: checked at upload (the key
matches, it covers the domain, it is in date), served by nginx over HTTPS,
with plain HTTP redirected."""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from paas.router.certs import tls_cert_load
from paas.router.errors import CertificateRejected
from paas.router.routes import Upstream, app_routes
from paas.router.services import router_apply
from tests.support.backends import Backend
from tests.support.certs import key_pem, new_key, self_signed
from tests.support.router import TestRouter


def test_an_uploaded_certificate_is_served_and_http_redirected(
    router: TestRouter, backends: list[Backend], tmp_path: Path
) -> None:
    pem = self_signed("shop.example.com", "www.shop.example.com")
    cert = tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=["shop.example.com"])
    router_apply(
        routes=app_routes(
            app="shop",
            hostnames=["shop.localhost", "shop.example.com"],
            upstreams=[Upstream("127.0.0.1", backends[0].port)],
            certificates={"shop.example.com": cert},
        )
    )
    ca = tmp_path / "ca.pem"
    ca.write_text(pem.cert)

    response = router.get_https("shop.example.com", ca, "/cart?id=3")
    assert response.status == 200
    body = json.loads(response.data)  # type: ignore[attr-defined]
    assert (body["backend"], body["path"], body["x-forwarded-proto"]) == (
        "one",
        "/cart?id=3",
        "https",
    )

    redirect = router.get("shop.example.com", "/cart?id=3")
    assert redirect.status == 308
    expected = f"https://shop.example.com:{router.https_port}/cart?id=3"
    assert redirect.getheader("Location") == expected
    assert router.get("shop.localhost").status == 200  # no certificate: stays plain HTTP


def test_an_unknown_name_over_tls_is_refused(router: TestRouter, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(self_signed("other.example.com").cert)
    with pytest.raises(ssl.SSLError):
        router.get_https("other.example.com", ca)


def test_a_key_of_another_certificate_is_refused() -> None:
    pem = self_signed("shop.example.com")
    with pytest.raises(CertificateRejected, match="does not belong to the certificate"):
        tls_cert_load(cert_pem=pem.cert, key_pem=key_pem(new_key()), hostnames=["shop.example.com"])


def test_an_expired_certificate_is_refused() -> None:
    now = datetime.now(UTC)
    pem = self_signed(
        "shop.example.com", not_before=now - timedelta(days=90), not_after=now - timedelta(days=1)
    )
    with pytest.raises(CertificateRejected, match="The certificate expired on"):
        tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=["shop.example.com"])


def test_a_certificate_not_yet_valid_is_refused() -> None:
    now = datetime.now(UTC)
    pem = self_signed("shop.example.com", not_before=now + timedelta(days=1))
    with pytest.raises(CertificateRejected, match="not valid before"):
        tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=["shop.example.com"])


def test_a_certificate_for_another_domain_is_refused() -> None:
    pem = self_signed("other.example.com")
    with pytest.raises(
        CertificateRejected, match="does not cover shop.example.com: it is for other.example.com"
    ):
        tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=["shop.example.com"])


def test_a_wildcard_covers_one_label_only() -> None:
    pem = self_signed("*.example.com")
    cert = tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=["shop.example.com"])
    assert cert.names == ("*.example.com",)
    for name in ["a.shop.example.com", "example.com"]:
        with pytest.raises(CertificateRejected, match=f"does not cover {name}"):
            tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=[name])


def test_a_certificate_without_subject_alt_names_is_refused() -> None:
    pem = self_signed("shop.example.com", san=False)
    with pytest.raises(CertificateRejected, match="no subjectAltName"):
        tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=["shop.example.com"])


def test_unreadable_and_encrypted_uploads_are_refused() -> None:
    pem = self_signed("shop.example.com")
    with pytest.raises(CertificateRejected, match="not a PEM certificate"):
        tls_cert_load(cert_pem="hello", key_pem=pem.key, hostnames=["shop.example.com"])
    with pytest.raises(CertificateRejected, match="not a PEM private key"):
        tls_cert_load(cert_pem=pem.cert, key_pem="hello", hostnames=["shop.example.com"])
    with pytest.raises(CertificateRejected, match="passphrase"):
        tls_cert_load(
            cert_pem=pem.cert, key_pem=key_pem(new_key(), b"secret"), hostnames=["shop.example.com"]
        )
    with pytest.raises(CertificateRejected, match="empty"):
        tls_cert_load(cert_pem="", key_pem=pem.key, hostnames=["shop.example.com"])


def test_the_loaded_certificate_keeps_its_expiry_and_hides_its_key() -> None:
    pem = self_signed("shop.example.com")
    cert = tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=["shop.example.com"])
    assert cert.not_after > datetime.now(UTC) + timedelta(days=29)
    assert "PRIVATE KEY" not in repr(cert)


def test_a_host_other_than_the_tls_name_is_misdirected(
    router: TestRouter, backends: list[Backend], tmp_path: Path
) -> None:
    pem = self_signed("shop.example.com")
    cert = tls_cert_load(cert_pem=pem.cert, key_pem=pem.key, hostnames=["shop.example.com"])
    upstreams = [Upstream("127.0.0.1", backends[0].port)]
    router_apply(
        routes=[
            *app_routes(
                app="shop",
                hostnames=["shop.example.com"],
                upstreams=upstreams,
                certificates={"shop.example.com": cert},
            ),
            *app_routes(app="web", hostnames=["web.localhost"], upstreams=upstreams),
        ]
    )
    ca = tmp_path / "ca.pem"
    ca.write_text(pem.cert)
    response = router.get_https("shop.example.com", ca, "/", host_header="web.localhost")
    assert response.status == 421
    assert backends[0].requests == 0
