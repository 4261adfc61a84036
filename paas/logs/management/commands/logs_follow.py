"""``manage.py logs_follow``: the log follower (see paas/logs/follower.py).

Run exactly one per control plane (scripts/up's Procfile does). SIGTERM or
Ctrl-C stops it; lines it held but had not stored are read again next time.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand

from paas.logs.follower import Follower
from paas.logs.services import LAYER


def router_access_log() -> Path:
    """PAAS_LOG_ROUTER_ACCESS_LOG, else where the router writes it."""
    if settings.PAAS_LOG_ROUTER_ACCESS_LOG:
        return Path(settings.PAAS_LOG_ROUTER_ACCESS_LOG)
    router_dir = getattr(settings, "PAAS_ROUTER_DIR", None) or settings.DATA_DIR / "router"
    return Path(router_dir) / "logs" / "access.log"


async def follow_logs(stop: asyncio.Event, out: Any) -> None:
    """Follow until ``stop`` is set (also used by ``manage.py singletons``)."""
    # What Django and the imports made lives as long as the process (this
    # one, or the web's with --singletons): keep it out of the collector's
    # full passes, which walked it all and stalled every stream and the
    # writer 77-91 ms a few times a minute under a flood (10 ms frozen).
    gc.freeze()
    follower = Follower(
        layer=get_channel_layer(LAYER),
        refresh_s=settings.PAAS_LOG_FOLLOW_REFRESH_S,
        router_log=router_access_log(),
    )
    out.write(f"following container logs and {follower.router_log}")
    await follower.run(stop)


class Command(BaseCommand):
    help = "Follow the agents' container logs and the router's access log into app logs."

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await follow_logs(stop, self.stdout)
