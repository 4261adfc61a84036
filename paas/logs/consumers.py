"""Live build log over a WebSocket: replay what was written, then stream."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from paas.builds.models import FINAL_STATES
from paas.builds.selectors import build_for_user, build_log_since
from paas.builds.services import build_group, build_state_event
from paas.core.errors import PaasError

# Close codes in the application range (4000-4999), mirroring HTTP statuses.
CLOSE_FORBIDDEN = 4403


class BuildLogConsumer(AsyncJsonWebsocketConsumer):
    group = ""
    last_seq = 0
    ended = False  # a final state was sent

    async def connect(self) -> None:
        build_id = self.scope["url_route"]["kwargs"]["build_id"]
        try:
            await database_sync_to_async(self._snapshot)(build_id)
        except PaasError:
            # Refuse the handshake: outsiders learn nothing about the build.
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = build_group(build_id)
        # Join before reading what to replay, lines and state alike: what
        # changes in between arrives twice at worst (a line is dropped below
        # by its sequence number, a state older than a final one is ignored),
        # never not at all. (The state read before joining could miss the
        # final one, and the page would wait for it forever.)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        lines = await database_sync_to_async(build_log_since)(build_id, 0)
        for seq, text in lines:
            await self._send_line(seq, text)
        await self._send_state(await database_sync_to_async(self._snapshot)(build_id))

    def _snapshot(self, build_id: str) -> dict[str, Any]:
        return build_state_event(build_for_user(user=self.scope["user"], build_id=build_id))

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The stream is one-way; ignore whatever a client sends.
        return

    async def build_line(self, event: dict[str, Any]) -> None:
        await self._send_line(event["seq"], event["text"])

    async def build_state(self, event: dict[str, Any]) -> None:
        await self._send_state(event)

    async def _send_state(self, event: dict[str, Any]) -> None:
        if self.ended:
            return
        self.ended = event["state"] in FINAL_STATES
        await self.send_json(
            {"type": "state", "state": event["state"], "error": event["error"],
             "image": event["image"]}
        )  # fmt: skip

    async def _send_line(self, seq: int, text: str) -> None:
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        await self.send_json({"type": "line", "seq": seq, "text": text})
