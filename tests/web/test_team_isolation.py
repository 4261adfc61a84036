"""Alice's app is invisible to bob (another team): 404 everywhere, never a leak.
Carol, a viewer in alice's team, may look but not deploy: 403."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.accounts.services import api_token_create
from paas.applications.services import app_create
from paas.asgi import application
from paas.builds.models import Build
from tests.web.archives import HELLO, targz

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alices_app(alice):
    return app_create(user=alice, team=alice.personal_team, name="alices-app")


def _upload():
    return SimpleUploadedFile("src.tar.gz", targz(HELLO), content_type="application/gzip")


def test_bob_gets_404_for_alices_app_page(client, bob, alices_app):
    client.force_login(bob)
    assert client.get("/apps/alices-app/").status_code == 404
    assert client.get("/apps/no-such-app/").status_code == 404


def test_bob_cannot_upload_to_alices_app(client, bob, alices_app):
    client.force_login(bob)
    response = client.post("/apps/alices-app/builds", {"source": _upload()})
    assert response.status_code == 404
    assert Build.objects.count() == 0


def test_bob_gets_404_for_a_build_of_alices_app(client, alice, bob, alices_app):
    client.force_login(alice)
    client.post("/apps/alices-app/builds", {"source": _upload()})
    build = Build.objects.get()
    client.force_login(bob)
    assert client.get(f"/apps/alices-app/builds/{build.pk}/").status_code == 404


def test_bob_does_not_see_alices_app_on_his_dashboard(client, bob, alices_app):
    client.force_login(bob)
    assert b"alices-app" not in client.get("/").content


def test_bobs_api_token_cannot_reach_alices_app(client, bob, alices_app):
    _, raw = api_token_create(user=bob, name="cli")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert client.get("/api/v1/apps/alices-app/builds", **auth).status_code == 404
    listing = client.get("/api/v1/apps", **auth).json()
    assert listing == {"apps": [], "total": 0, "next_offset": None}
    response = client.post("/api/v1/apps/alices-app/builds", {"source": _upload()}, **auth)
    assert response.status_code == 404


def test_carol_the_viewer_sees_but_cannot_deploy(client, carol_viewer_in_alices_team, alices_app):
    client.force_login(carol_viewer_in_alices_team)
    assert client.get("/apps/alices-app/").status_code == 200
    response = client.post(
        "/apps/alices-app/builds", {"source": _upload()}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 403
    assert "Viewer" in response.json()["message"]
    assert Build.objects.count() == 0


def test_bob_cannot_create_an_app_in_alices_team(client, alice, bob):
    client.force_login(bob)
    response = client.post("/apps/new", {"name": "sneaky", "team": alice.personal_team.pk})
    assert response.status_code == 404


def _build_for(alice, alices_app, client):
    client.force_login(alice)
    client.post("/apps/alices-app/builds", {"source": _upload()})
    return Build.objects.get()


async def test_bob_cannot_subscribe_to_alices_build_log(client, alice, bob, alices_app):
    from asgiref.sync import sync_to_async

    build = await sync_to_async(_build_for)(alice, alices_app, client)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/builds/{build.pk}/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )
    # Sessions are the browser's way in; here the user is put in the scope the
    # way AuthMiddleware would after reading bob's session cookie.
    session_cookie = await sync_to_async(_session_cookie_for)(client, bob)
    communicator.scope["headers"].append((b"cookie", session_cookie))
    connected, code = await communicator.connect()
    assert connected is False
    assert code == 4403
    await communicator.disconnect()


def _session_cookie_for(client, user):
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_a_websocket_from_another_origin_is_refused(client, alice, alices_app):
    from asgiref.sync import sync_to_async

    build = await sync_to_async(_build_for)(alice, alices_app, client)
    cookie = await sync_to_async(_session_cookie_for)(client, alice)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/builds/{build.pk}/",
        headers=[(b"origin", b"http://evil.example"), (b"host", b"127.0.0.1"), (b"cookie", cookie)],
    )
    connected, _ = await communicator.connect()
    assert connected is False
    await communicator.disconnect()
