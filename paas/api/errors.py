"""Every API error is one JSON shape, whatever raised it:

    {"error": "<code>", "message": "<what went wrong>", "field": "<name>"?}

``error`` is a stable code (invalid, not_found, forbidden, conflict,
unauthenticated, bad_token, ...); ``field`` names the input at fault when
there is one. Services raise PaasError; ninja's own errors (a body that is
not JSON, a parameter of the wrong type) are turned into the same shape, as
400s, never 422s or 500s.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from paas.core.errors import PaasError

log = logging.getLogger(__name__)

# Where ninja says a value came from; the field is the first name after it.
_SOURCES = {"body", "query", "path", "form", "file", "header", "payload"}


def _respond(
    api: NinjaAPI, request: HttpRequest, body: dict[str, Any], status: int
) -> HttpResponse:
    response = api.create_response(request, body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="paas"'
    return response


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    names = [str(part) for part in loc if not isinstance(part, int)]
    names = [n for n in names if n not in _SOURCES]
    return names[0] if names else ""


def _validation_message(error: dict[str, Any], field: str) -> str:
    message = str(error.get("msg", "invalid value"))
    return f"{field}: {message}" if field else message


def install_error_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(PaasError)
    def paas_error(request: HttpRequest, exc: PaasError) -> HttpResponse:
        return _respond(api, request, exc.as_dict(), exc.status)

    @api.exception_handler(ValidationError)
    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        first = exc.errors[0] if exc.errors else {}
        field = _field(first.get("loc", ()))
        body = {"error": "invalid", "message": _validation_message(first, field)}
        if field:
            body["field"] = field
        return _respond(api, request, body, 400)

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        body = {"error": "unauthenticated", "message": "Send Authorization: Bearer <token>."}
        return _respond(api, request, body, 401)

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        code = "invalid" if exc.status_code == 400 else "error"
        message = exc.message
        if message.startswith("Cannot parse request body"):
            message = "The body must be a JSON object."
        return _respond(api, request, {"error": code, "message": message}, exc.status_code)

    @api.exception_handler(Exception)
    def server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
        # A bug: logged with its traceback here, never shown to the client.
        log.exception("API %s %s failed", request.method, request.path)
        body = {"error": "server_error", "message": "Something went wrong on our side."}
        return _respond(api, request, body, 500)

    @api.exception_handler(Http404)
    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return _respond(api, request, {"error": "not_found", "message": "not found"}, 404)
