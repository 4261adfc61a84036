"""The REST API under /api/v1: django-ninja routes, one bearer-token auth,
one error shape (paas/api/errors.py), paging (paas/api/pagination.py).

The schema is served at /api/v1/openapi.json and a Swagger page at
/api/v1/docs, from ninja's own vendored assets (no CDN: paas/settings.py
lists ninja's templates and static files beside ours, so they are served
like ours) with Swagger's online validator turned off (it would call out to
the internet).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja import NinjaAPI, Swagger
from ninja.operation import Operation
from ninja.parser import Parser

from paas.api.auth import BearerToken
from paas.api.endpoints import (
    apps,
    builds,
    deploys,
    domains,
    hosts,
    logs,
    registry,
    run,
    tokens,
)
from paas.api.errors import install_error_handlers


class JsonParser(Parser):
    """A body is a JSON object. One that is not JSON at all and was not sent
    as JSON (an empty form, as some clients send with a bare POST) reads as
    {}: actions whose options are all optional then run with their defaults,
    and a required field is a 400 naming it. Malformed JSON is a 400."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        try:
            data = json.loads(request.body)
        except ValueError:
            if request.content_type == "application/json":
                raise
            return {}
        if not isinstance(data, dict):
            raise ValueError("The body must be a JSON object.")
        return data


class OwnAssetsSwagger(Swagger):
    """ninja renders its CDN page unless "ninja" is an installed app; it is
    not (paas/settings.py: importing it in every process costs memory), so
    render its vendored template, which links only its vendored assets."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {
            "swagger_settings": json.dumps(self.settings, indent=1),
            "api": api,
            "add_csrf": False,  # bearer tokens only: no cookie, so no CSRF token
        }
        return render(request, self.template, context)


class PaasApi(NinjaAPI):
    def get_openapi_operation_id(self, operation: Operation) -> str:
        # The view's name alone (they are unique): short names for generated clients.
        return operation.view_func.__name__


api = PaasApi(
    title="small dotCloud API",
    version="1",
    description=(
        "Authenticate with `Authorization: Bearer <token>` (tokens: the API tokens page, "
        'or POST /api/v1/tokens). Errors are `{"error": code, "message": text, '
        '"field"?: name}`. Lists take `limit` (1-500, default 100) and `offset` and '
        "return `total` and `next_offset` (null on the last page)."
    ),
    auth=BearerToken(),
    parser=JsonParser(),
    urls_namespace="api-v1",
    docs=OwnAssetsSwagger(settings={"validatorUrl": None}),
)
install_error_handlers(api)
for router in (apps.router, builds.router, deploys.router, domains.router, logs.router,
               registry.router, hosts.router, tokens.router, run.router):  # fmt: skip
    api.add_router("", router)
