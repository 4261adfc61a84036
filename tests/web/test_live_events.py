"""Live events on a real Redis layer: a change made through a service
reaches the watchers of its app (or the admins watching hosts), and nobody
else; a revoked membership closes the socket."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from paas.accounts.models import Membership
from paas.asgi import application
from paas.hosts import consumers
from paas.hosts.instances import instance_observe
from paas.hosts.models import HostState, Instance
from paas.hosts.services import host_set_state
from runtime_agent import wire
from runtime_agent.wire import ContainerState
from tests.web.logs.support import session_of
from tests.web.pages.support import deployed_app, host

pytestmark = pytest.mark.django_db(transaction=True)


async def socket(user: Any | None, origin: bytes = b"http://127.0.0.1") -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if user is not None:
        session = await sync_to_async(session_of)(user)
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, "/ws/events/", headers=headers)


async def subscribe(ws: WebsocketCommunicator, **what: Any) -> dict[str, Any]:
    """Subscribe; the answer (subscribed or refused), past the snapshot."""
    await ws.send_json_to({"type": "subscribe", **what})
    while (answer := await ws.receive_json_from(timeout=10))["type"] == "event":
        pass
    return dict(answer)


async def next_event(ws: WebsocketCommunicator, kind: str, **match: Any) -> dict[str, Any]:
    """The first event of ``kind`` whose fields match (others are skipped)."""
    while True:
        message = await ws.receive_json_from(timeout=10)
        if message["type"] != "event" or message["kind"] != kind:
            continue
        if all(message.get(k) == v for k, v in match.items()):
            return dict(message)


def crash(container_name: str) -> None:
    """What the agent would report of a crashed instance, through the service."""
    instance = Instance.objects.select_related("app").get(container_name=container_name)
    info = wire.ContainerInfo(
        name=container_name, image="img", image_digest="sha256:aa",
        state=ContainerState.EXITED, exit_code=3,
    )  # fmt: skip
    instance_observe(instance, info)


@pytest.fixture
def shop(alice: Any) -> Any:
    return deployed_app(alice, "shop", host("host-1"), ["running"])


async def test_an_instance_state_change_reaches_a_watcher_of_its_app(alice, shop):
    ws = await socket(alice)
    assert (await ws.connect(timeout=10))[0]
    await ws.send_json_to({"type": "subscribe", "app": "shop"})
    # The current state first (nothing changed before the subscription is lost) ...
    first = await next_event(ws, "instance", name="shop.v1.web.1")
    assert first["state"] == "running"
    assert (await next_event(ws, "app", name="shop"))["status"] == "running"
    await sync_to_async(crash)("shop.v1.web.1")
    # ... then the change, and the app's new summary for the dashboard.
    event = await next_event(ws, "instance", name="shop.v1.web.1")
    assert (event["state"], event["state_label"], event["exit_code"]) == ("crashed", "Crashed", 3)
    assert (await next_event(ws, "app", name="shop"))["status"] == "crashed"
    await ws.disconnect()


async def test_an_event_is_sent_only_once_its_transaction_commits(alice, shop):
    ws = await socket(alice)
    await ws.connect(timeout=10)
    await subscribe_past_snapshot(ws, "shop")

    def crash_then_roll_back() -> None:
        with transaction.atomic():
            crash("shop.v1.web.1")
            raise_to_roll_back()

    with pytest.raises(RolledBack):
        await sync_to_async(crash_then_roll_back)()
    assert await ws.receive_nothing(timeout=1)  # nothing happened, nothing said
    await ws.disconnect()


class RolledBack(Exception):
    pass


def raise_to_roll_back() -> None:
    raise RolledBack


async def subscribe_past_snapshot(ws: WebsocketCommunicator, app: str) -> None:
    """Subscribe and skip the snapshot (``subscribed`` comes after it)."""
    await ws.send_json_to({"type": "subscribe", "app": app})
    while (await ws.receive_json_from(timeout=10))["type"] != "subscribed":
        pass


async def test_a_viewer_may_watch(carol_viewer_in_alices_team, shop):
    ws = await socket(carol_viewer_in_alices_team)
    await ws.connect(timeout=10)
    await subscribe_past_snapshot(ws, "shop")
    await sync_to_async(crash)("shop.v1.web.1")
    assert (await next_event(ws, "instance", name="shop.v1.web.1"))["state"] == "crashed"
    await ws.disconnect()


async def test_another_teams_member_is_refused_and_hears_nothing(bob, shop):
    ws = await socket(bob)
    await ws.connect(timeout=10)
    answer = await subscribe(ws, app="shop")
    assert answer == {"type": "refused", "app": "shop", "message": answer["message"]}
    # The same answer as for an app that does not exist: nothing leaks.
    missing = await subscribe(ws, app="no-such-app")
    assert missing["type"] == "refused"
    assert missing["message"].replace("no-such-app", "shop") == answer["message"]
    await sync_to_async(crash)("shop.v1.web.1")
    assert await ws.receive_nothing(timeout=1)
    await ws.disconnect()


async def test_a_socket_without_a_session_or_from_another_site_is_refused(alice, shop):
    anonymous = await socket(None)
    assert await anonymous.connect(timeout=10) == (False, 4403)
    elsewhere = await socket(alice, origin=b"http://evil.example")
    connected, _ = await elsewhere.connect(timeout=10)
    assert not connected


async def test_host_events_are_for_platform_admins_only(admin_user, alice, shop):
    watcher = await socket(alice)
    await watcher.connect(timeout=10)
    refused = await subscribe(watcher, hosts=True)
    assert refused["type"] == "refused"
    assert "admins" in refused["message"]

    admin = await socket(admin_user)
    await admin.connect(timeout=10)
    await admin.send_json_to({"type": "subscribe", "hosts": True})
    assert (await next_event(admin, "host", name="host-1"))["state"] == "ready"

    def drain() -> None:
        from paas.hosts.models import Host

        host_set_state(user=admin_user, host=Host.objects.get(name="host-1"),
                       state=HostState.DRAINING)  # fmt: skip

    await sync_to_async(drain)()
    event = await next_event(admin, "host", name="host-1")
    assert (event["state"], event["state_label"]) == ("draining", "Draining")
    assert await watcher.receive_nothing(timeout=1)
    await admin.disconnect()
    await watcher.disconnect()


async def test_a_revoked_membership_closes_the_socket(
    carol_viewer_in_alices_team, shop, monkeypatch
):
    monkeypatch.setattr(consumers, "MEMBERSHIP_RECHECK_S", 0.0)
    ws = await socket(carol_viewer_in_alices_team)
    await ws.connect(timeout=10)
    await subscribe_past_snapshot(ws, "shop")
    await sync_to_async(Membership.objects.filter(user=carol_viewer_in_alices_team).delete)()
    await sync_to_async(crash)("shop.v1.web.1")
    assert await ws.receive_output(timeout=10) == {"type": "websocket.close", "code": 4403}


async def test_a_build_and_a_new_release_reach_the_app_page_watchers(alice, shop):
    from paas.applications.releases import config_set
    from paas.builds.models import Build
    from paas.builds.services import build_claim

    ws = await socket(alice)
    await ws.connect(timeout=10)
    await subscribe_past_snapshot(ws, "shop")
    build = await sync_to_async(Build.objects.create)(
        app=shop, number=1, archive_name="shop.zip", archive_path="/nowhere"
    )
    await sync_to_async(build_claim)(build_id=str(build.pk))
    event = await next_event(ws, "build", id=str(build.pk))
    assert (event["number"], event["state"], event["source"]) == (1, "building", "shop.zip")
    assert event["url"] == f"/apps/shop/builds/{build.pk}/"

    await sync_to_async(config_set)(user=alice, app=shop, values={"MODE": "fast"})
    release = await next_event(ws, "release", number=2)
    assert (release["state"], release["description"]) == ("pending", "Set MODE")
    await ws.disconnect()
