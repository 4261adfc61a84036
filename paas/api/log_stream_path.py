"""Which requests are the API's live log follow (paas/api/log_stream_asgi.py).

Apart from that module, which imports the API's schemas (django-ninja and
pydantic, ~17 MiB): paas/asgi.py asks this for every request and imports the
follow's app only when one comes, so a web that serves only the panel never
loads the API (as paas/urls_api.py)."""

from __future__ import annotations

import re
from typing import Any

PATH = re.compile(r"/api/v1/apps/(?P<name>[^/]{1,300})/logs/stream/?")


def is_log_stream(scope: dict[str, Any]) -> bool:
    return (
        scope.get("type") == "http"
        and scope.get("method") == "GET"
        and PATH.fullmatch(scope.get("path", "")) is not None
    )
