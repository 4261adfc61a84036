"""The build log WebSocket never shows a build going back from its end: a
state event older than the final state already shown is dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from paas.applications.services import app_create
from paas.asgi import application
from paas.builds import services
from paas.builds.models import Build, BuildState

pytestmark = pytest.mark.django_db(transaction=True)


def _failed_build(alice, tmp_path: Path) -> Build:
    app = app_create(user=alice, team=alice.personal_team, name="ended")
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"")
    build = Build.objects.create(app=app, number=1, archive_name="a.tar", archive_path=str(archive))
    assert services.build_claim(build_id=str(build.pk))
    services.BuildLogWriter(build.pk)("-----> Build #1 of ended from a.tar")
    assert services.build_finish(build_id=str(build.pk), state=BuildState.FAILED, error="boom")
    return build


def _session_cookie_for(client, user) -> bytes:
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_a_state_older_than_the_final_one_is_not_shown(client, alice, tmp_path):
    build = await sync_to_async(_failed_build)(alice, tmp_path)
    cookie = await sync_to_async(_session_cookie_for)(client, alice)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/builds/{build.pk}/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)],
    )
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=10))["seq"] == 1
    assert (await communicator.receive_json_from(timeout=10))["state"] == "failed"

    # A "building" event published while the page connected arrives late;
    # then a line, as a marker that the stale event has been handled.
    layer = get_channel_layer()
    group = services.build_group(build.pk)
    stale = {"type": "build.state", "state": "building", "error": "", "image": ""}
    await layer.group_send(group, stale)
    await layer.group_send(group, {"type": "build.line", "seq": 2, "text": "marker"})
    assert await communicator.receive_json_from(timeout=10) == {
        "type": "line",
        "seq": 2,
        "text": "marker",
    }
    await communicator.disconnect()
