"""Live events over a WebSocket (``/ws/events/``): instance, release, host
and deploy-progress changes for the pages that show them (paas.hosts.live
publishes them, static/live.js applies them).

One socket per page, subscriptions by message, each checked on its own:
the dashboard watches every app it lists, an app page its app, the hosts
page the hosts (platform admins only)::

    client -> {"type": "subscribe", "app": NAME} | {"type": "subscribe", "hosts": true}
    server -> {"type": "event", "kind": "instance"|"release"|"build"|"app"|"deploy"|"host", ...}
              {"type": "subscribed", "app": NAME} | {"type": "subscribed", "hosts": true}
              {"type": "refused", "app"|"hosts": ..., "message": ...}

A subscription is answered with the current state as events (so nothing
changed between the page's render and the subscription is lost), then
``subscribed`` (the snapshot is complete), then live events. Viewers may
watch. Session auth and the Origin check come from paas.asgi; a member
removed from the app's team (or an admin no longer staff) is
disconnected, as by the log consumers.
"""

from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth.models import User

from paas.accounts.models import Membership
from paas.applications.selectors import app_for_user
from paas.core.errors import PaasError
from paas.hosts.live import HOSTS_GROUP, app_events_group, app_snapshot, hosts_snapshot

CLOSE_FORBIDDEN = 4403
MEMBERSHIP_RECHECK_S = 15.0  # a watcher removed from the team is cut off within this
MAX_SUBSCRIPTIONS = 500  # apps one socket may watch (a dashboard lists them all)


class LiveEventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.teams: dict[str, int] = {}  # group joined -> the team that lets us watch
        self.checked_at = time.monotonic()
        if not self.scope["user"].is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in self.teams:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.teams = {}

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "subscribe":
            await self.send_json({"type": "error", "message": "send a subscribe message"})
        elif isinstance(content.get("app"), str):
            await self._subscribe_app(content["app"][:100])
        elif content.get("hosts") is True:
            await self._subscribe_hosts()
        else:
            await self.send_json({"type": "error", "message": "subscribe to an app or hosts"})

    async def _subscribe_app(self, name: str) -> None:
        try:
            if len(self.teams) >= MAX_SUBSCRIPTIONS:
                raise PaasError(f"At most {MAX_SUBSCRIPTIONS} subscriptions per socket.")
            app = await database_sync_to_async(app_for_user)(user=self.scope["user"], name=name)
        except PaasError as exc:
            # Outsiders learn nothing about the app: the message is the 404's.
            await self.send_json({"type": "refused", "app": name, "message": exc.message})
            return
        await self._join(app_events_group(app.pk), app.team_id)
        for event in await database_sync_to_async(app_snapshot)(app.pk):
            await self.send_json({"type": "event", **event})
        await self.send_json({"type": "subscribed", "app": name})

    async def _subscribe_hosts(self) -> None:
        if not await database_sync_to_async(self._is_staff)():
            message = "Only platform admins can watch hosts."
            await self.send_json({"type": "refused", "hosts": True, "message": message})
            return
        await self._join(HOSTS_GROUP, 0)
        for event in await database_sync_to_async(hosts_snapshot)():
            await self.send_json({"type": "event", **event})
        await self.send_json({"type": "subscribed", "hosts": True})

    async def _join(self, group: str, team_id: int) -> None:
        # Joined before the snapshot is read: a change in between comes
        # twice (both carry the newest state), never not at all.
        if group not in self.teams:
            self.teams[group] = team_id
            await self.channel_layer.group_add(group, self.channel_name)

    async def live_event(self, message: dict[str, Any]) -> None:
        if await self._still_allowed():
            await self.send_json({"type": "event", **message["event"]})

    def _is_staff(self) -> bool:
        user = self.scope["user"]
        return User.objects.filter(pk=user.pk, is_active=True, is_staff=True).exists()

    def _allowed(self) -> bool:
        user = self.scope["user"]
        teams = set(Membership.objects.filter(user_id=user.pk).values_list("team_id", flat=True))
        wanted = set(self.teams.values()) - {0}
        return wanted <= teams and (HOSTS_GROUP not in self.teams or self._is_staff())

    async def _still_allowed(self) -> bool:
        """Rights are checked again now and then: someone who lost one of
        the subscriptions' rights stops receiving and is disconnected."""
        if time.monotonic() - self.checked_at < MEMBERSHIP_RECHECK_S:
            return True
        self.checked_at = time.monotonic()
        if await database_sync_to_async(self._allowed)():
            return True
        await self.disconnect(CLOSE_FORBIDDEN)
        await self.close(code=CLOSE_FORBIDDEN)
        return False
