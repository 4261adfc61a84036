"""Build secrets at rest: encrypted with a key derived from SECRET_KEY
(Fernet: AES-128-CBC + HMAC-SHA256), so a copy of the database alone does
not give them away. Changing SECRET_KEY makes stored secrets unreadable:
the build then fails naming them, and they must be entered again."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from paas.core.errors import ValidationFailed

_CONTEXT = b"paas build secrets v1\0"


def _fernet() -> Fernet:
    digest = hashlib.sha256(_CONTEXT + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def unseal(sealed: str, *, name: str, what: str = "Build secret") -> str:
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise ValidationFailed(
            f"{what} {name!r} cannot be read (SECRET_KEY changed?): set it again.",
            field=name,
        ) from None
