"""Publishing events to the browser through the Channels layer (Redis)."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send to a group; a lost live event is not fatal (the DB keeps the truth
    and the page replays it), so failures are logged, not raised."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the stream is best-effort; the DB has the record
        log.exception("could not publish to %s", group)
