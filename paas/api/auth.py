"""Bearer-token authentication for the REST API (tokens from accounts)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from paas.accounts.services import api_token_authenticate
from paas.core.errors import PaasError

View = Callable[..., HttpResponse]


def api_view(fn: View) -> View:
    """Authenticate by ``Authorization: Bearer <token>`` and turn PaasError
    into a JSON error. CSRF does not apply: no cookie is trusted here."""

    @csrf_exempt
    @functools.wraps(fn)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            response = JsonResponse(
                {"error": "unauthenticated", "message": "Send Authorization: Bearer <token>."},
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="paas"'
            return response
        user = api_token_authenticate(raw=raw.strip())
        if user is None:
            return JsonResponse(
                {"error": "bad_token", "message": "This token is unknown or revoked."},
                status=401,
            )
        request.user = user
        try:
            return fn(request, *args, **kwargs)
        except PaasError as exc:
            return JsonResponse(exc.as_dict(), status=exc.status)

    return wrapper
