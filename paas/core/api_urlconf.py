"""Requests under ``/api/`` resolve (and reverse) with paas/urls_api.py, the
site's URLconf plus the API; every other request with paas/urls.py, which
lacks it, so pages never import the API (see paas/urls_api.py for why).
First in MIDDLEWARE: CommonMiddleware's trailing-slash redirect resolves
with the request's URLconf too. Sync and async: in daphne's async stack a
sync-only middleware would cost every request a thread hop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

API_PREFIX = "/api/"
API_URLCONF = "paas.urls_api"


def _choose(request: HttpRequest) -> None:
    if request.path_info.startswith(API_PREFIX):
        request.urlconf = API_URLCONF  # type: ignore[attr-defined]


@sync_and_async_middleware
def api_urlconf(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            _choose(request)
            response: Awaitable[HttpResponseBase] = get_response(request)
            return await response

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        _choose(request)
        response: HttpResponseBase = get_response(request)
        return response

    return sync_middleware
