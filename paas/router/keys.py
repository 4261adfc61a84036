"""Sealing uploaded private keys at rest: Fernet (AES + HMAC) with a key
derived from SECRET_KEY, so a copy of the database alone does not give
away the TLS keys of the apps' domains. Changing SECRET_KEY makes sealed
keys unreadable: their certificates must then be uploaded again."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from paas.router.errors import RouterError


def _fernet() -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"paas.router.tls-key"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def unseal(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise RouterError(
            "A stored TLS key cannot be read (was SECRET_KEY changed?): upload the "
            "certificate and key again."
        ) from None
