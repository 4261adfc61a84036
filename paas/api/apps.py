from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class ApiConfig(AppConfig):
    name = "paas.api"
    label = "api"

    def ready(self) -> None:
        checks.register(check_api_urlconf, checks.Tags.urls)


def check_api_urlconf(app_configs: Any = None, **_: Any) -> list[checks.CheckMessage]:
    """Django checks ROOT_URLCONF only, which lacks the API (paas/urls_api.py
    says why): check the API's URLconf too. It imports the API, in the
    processes that run checks only (migrate, check, runserver; not daphne)."""
    from django.core.checks.urls import check_resolver
    from django.urls import get_resolver

    from paas.core.api_urlconf import API_URLCONF

    return list(check_resolver(get_resolver(API_URLCONF)))
