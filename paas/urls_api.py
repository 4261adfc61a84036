"""The URLconf of requests under ``/api/``: the site's (paas/urls.py) with
the REST API at ``api/v1/``, where it always was. ``paas.core.api_urlconf``
(first in MIDDLEWARE) gives it to those requests only, so the API (django-ninja,
pydantic and every schema: ~17 MiB in the web) is imported by the first API
request, not by the first page: rendering a page reverses URLs, and
reversing imports every URLconf the root one includes. The panel never
calls the API (the CLI and other clients do), so a web serving only
browsers and git pushes never loads it. Reversing an API name from a page
would not find it (none does: tests/web/test_api_urlconf.py)."""

from __future__ import annotations

from django.urls import include, path

from paas.urls import urlpatterns as site

_at = next(i for i, p in enumerate(site) if getattr(p, "name", None) == "registry-token")
urlpatterns = [*site[:_at], path("api/v1/", include("paas.api.urls")), *site[_at:]]
