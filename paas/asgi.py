"""ASGI entry point: HTTP through Django (but for the API's live log follow,
see below), WebSockets through Channels.

WebSockets check the Origin against ALLOWED_HOSTS (a page on another site
cannot ride a signed-in user's cookie) and authenticate by session.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paas.settings")
django_asgi = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from paas.api.log_stream_path import is_log_stream  # noqa: E402
from paas.routing import websocket_urlpatterns  # noqa: E402


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Django, except the API's live log follow: a coroutine of its own, so a
    follower holds no thread (paas/api/log_stream_asgi.py)."""
    if is_log_stream(scope):
        # Imported by the first follow: it loads the API's schemas (ninja,
        # pydantic), which a web serving only the panel never needs.
        from paas.api.log_stream_asgi import log_stream_app

        await log_stream_app(scope, receive, send)
    else:
        await django_asgi(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
