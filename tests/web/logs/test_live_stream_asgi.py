"""The live log follow driven in this process through the platform's ASGI
application (as daphne drives it), on real Redis: a client that leaves leaves
no task and no channel or group of the stream behind, and a follower removed
from the team, or whose token is revoked, gets an ``end`` event and nothing
more. (Over a real daphne: test_api_live_stream.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer

from paas.accounts.models import ApiToken, Membership
from paas.accounts.services import api_token_create, api_token_revoke
from paas.asgi import application
from paas.logs import live_stream
from paas.logs.services import LAYER
from tests.web.logs.stream_support import shop_with_lines

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

WAIT_S = 30.0


def _shop(alice: Any, viewer: Any) -> str:
    shop_with_lines(alice, "one")
    return api_token_create(user=viewer, name="t")[1]


async def _open(token: str) -> ApplicationCommunicator:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/api/v1/apps/shop/logs/stream", "raw_path": b"",
        "query_string": b"", "root_path": "", "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
    }  # fmt: skip
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await comm.receive_output(WAIT_S)
    assert (start["type"], start["status"]) == ("http.response.start", 200)
    return comm


async def _body_until(comm: ApplicationCommunicator, text: bytes) -> bytes:
    body = b""
    while text not in body:
        message = await comm.receive_output(WAIT_S)
        assert message["type"] == "http.response.body", message
        body += message["body"]
    return body


def _layer_state() -> tuple[dict[str, Any], dict[str, Any]]:
    loop_layer = get_channel_layer(LAYER)._get_layer()
    return dict(loop_layer.channels), dict(loop_layer.groups)


async def _follow_and_leave(token: str) -> None:
    comm = await _open(token)
    await _body_until(comm, b'"text": "one"')
    channels, groups = _layer_state()
    assert len(channels) == 1 and len(groups) == 1  # the stream's, while it runs
    await comm.send_input({"type": "http.disconnect"})
    await comm.wait(WAIT_S)
    assert _layer_state() == ({}, {})


async def test_a_client_that_leaves_leaves_no_task_or_subscription(
    alice: Any, carol_viewer_in_alices_team: Any
) -> None:
    token = await sync_to_async(_shop)(alice, carol_viewer_in_alices_team)
    # A first follow opens the layer's connection to Redis: its one receiving
    # task serves every follower of this process and stays. Count from there.
    await _follow_and_leave(token)
    before = asyncio.all_tasks()
    await _follow_and_leave(token)

    def leftovers() -> set[asyncio.Task[Any]]:
        return {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}

    for _ in range(100):  # cancelled tasks finish on the loop's next turns
        if not leftovers():
            break
        await asyncio.sleep(0.01)
    assert not leftovers()


def _remove_carol(carol: Any) -> None:
    Membership.objects.filter(user=carol).delete()


def _revoke_carols_tokens(carol: Any) -> None:
    for token in ApiToken.objects.filter(user=carol):
        api_token_revoke(token=token)


@pytest.mark.parametrize("revoke", [_remove_carol, _revoke_carols_tokens])
async def test_a_follower_whose_access_goes_gets_an_end(
    alice: Any, carol_viewer_in_alices_team: Any, settings: Any, monkeypatch: Any, revoke: Any
) -> None:
    monkeypatch.setattr(live_stream, "MEMBERSHIP_RECHECK_S", 0.0)  # checked at each turn
    settings.PAAS_LOG_STREAM_HEARTBEAT_S = 0.05
    token = await sync_to_async(_shop)(alice, carol_viewer_in_alices_team)
    comm = await _open(token)
    await _body_until(comm, b'"text": "one"')
    await sync_to_async(revoke)(carol_viewer_in_alices_team)
    body = await _body_until(comm, b"event: end")
    assert b'"reason": "forbidden"' in body and b"was revoked" in body
    last = await comm.receive_output(WAIT_S)  # the end of the response
    assert (last["type"], last.get("more_body", False)) == ("http.response.body", False)
    await comm.wait(WAIT_S)
    assert _layer_state() == ({}, {})
