"""The registry's token ``realm`` (``/registry/token``): where Distribution
sends a client that came without a token. The platform's own clients never
come here (the worker mints its tokens, agents get theirs with each create),
so this only tells a person with ``docker pull`` what to do instead."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def registry_token(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "errors": [
                {
                    "code": "UNAUTHORIZED",
                    "message": "The platform's registry takes tokens minted by its control "
                    "plane only. As root on the control plane: manage.py registry_token "
                    "repository:<app>:pull, then pass the token as a bearer token.",
                }
            ]
        },
        status=401,
    )
