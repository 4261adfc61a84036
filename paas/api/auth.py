"""Bearer-token authentication for the REST API (tokens from accounts).

Cookies are never trusted here, so CSRF does not apply: a page of another
site cannot make a browser send an Authorization header. A missing header
and a bad token are two different 401s, so a client can tell "log in" from
"your token was revoked".
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja.security import HttpBearer

from paas.accounts.services import api_token_authenticate
from paas.core.errors import PaasError


class Unauthenticated(PaasError):
    code = "unauthenticated"
    status = 401


class BadToken(PaasError):
    code = "bad_token"
    status = 401


class BearerToken(HttpBearer):
    """``Authorization: Bearer <token>``; the token's user becomes request.user."""

    def __call__(self, request: HttpRequest) -> User:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise Unauthenticated("Send Authorization: Bearer <token>.")
        return self.authenticate(request, raw.strip())

    def authenticate(self, request: HttpRequest, token: str) -> User:
        user = api_token_authenticate(raw=token)
        if user is None:
            raise BadToken("This token is unknown or revoked.")
        request.user = user
        return user
