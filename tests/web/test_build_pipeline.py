"""End to end on real parts: an upload through the HTTP view, a real Celery
worker process on a real Redis, and the log arriving over the WebSocket."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.applications.services import app_create
from paas.asgi import application
from paas.builds.models import Build, BuildState
from tests.support.processes import async_wait_until
from tests.web.archives import HELLO, targz, zipped

pytestmark = pytest.mark.django_db(transaction=True)


def _upload_as(client, user, name, data, filename="src.tar.gz"):
    client.force_login(user)
    response = client.post(
        f"/apps/{name}/builds",
        {"source": SimpleUploadedFile(filename, data)},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.content
    return Build.objects.get(pk=response.json()["build"]), client.cookies["sessionid"].value


async def _open_log(build, session):
    communicator = WebsocketCommunicator(
        application,
        f"/ws/builds/{build.pk}/",
        headers=[
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
            (b"cookie", f"sessionid={session}".encode()),
        ],
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _read_until_final(communicator, timeout=60):
    lines: list[tuple[int, str]] = []
    states: list[str] = []
    while not states or states[-1] not in {"succeeded", "failed"}:
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == "line":
            lines.append((message["seq"], message["text"]))
        else:
            states.append(message["state"])
    return lines, states


async def test_the_log_streams_live_while_the_worker_builds(client, alice, workers, registry):
    await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="hello")
    build, session = await sync_to_async(_upload_as)(client, alice, "hello", targz(HELLO))
    # Subscribe before any worker runs: every line must then arrive live.
    communicator = await _open_log(build, session)
    first = await communicator.receive_json_from(timeout=5)
    assert first == {"type": "state", "state": "queued", "error": "", "image": ""}
    await sync_to_async(workers.start)()
    lines, states = await _read_until_final(communicator)
    await communicator.disconnect()

    assert states[-2:] == ["building", "succeeded"]
    texts = [text for _, text in lines]
    assert texts[0] == "-----> Build #1 of hello from src.tar.gz"
    assert any(t.startswith("       Extracted 3 files") for t in texts), texts
    assert any("detected a python app" in t for t in texts), texts
    assert texts[-1] == "-----> Build succeeded"
    assert [seq for seq, _ in lines] == list(range(1, len(lines) + 1))
    stored = await sync_to_async(Build.objects.get)(pk=build.pk)
    assert stored.state == BuildState.SUCCEEDED
    assert await sync_to_async(stored.log_lines.count)() == len(lines)
    # A real image, tagged v1 in the real registry.
    assert stored.version == 1
    assert stored.kind == "python"
    assert stored.image_ref.endswith("/hello:v1")
    with registry.client() as client:
        _, digest, _ = client.get_manifest("hello", "v1")
    assert digest == stored.image_digest


async def test_a_late_subscriber_gets_the_whole_log_replayed(client, alice, workers):
    await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="late")
    await sync_to_async(workers.start)()
    build, session = await sync_to_async(_upload_as)(
        client, alice, "late", zipped(HELLO), "src.zip"
    )

    # Wait for the build to end, however long a loaded machine takes (the
    # first build of a session also pushes the stack), before subscribing.
    async def final() -> bool:
        await sync_to_async(build.refresh_from_db)()
        return build.is_final

    await async_wait_until(final, timeout_s=180, what="the build to finish")
    assert build.state == BuildState.SUCCEEDED

    communicator = await _open_log(build, session)
    lines, states = await _read_until_final(communicator, timeout=5)
    await communicator.disconnect()
    assert states == ["succeeded"]
    assert lines[0][1] == "-----> Build #1 of late from src.zip"
    assert lines[-1][1] == "-----> Build succeeded"


async def test_an_unsafe_archive_fails_the_build_with_the_entry_named(client, alice, workers):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="evil")
    await sync_to_async(workers.start)()
    build, session = await sync_to_async(_upload_as)(client, alice, "evil", buf.getvalue())
    communicator = await _open_log(build, session)
    lines, states = await _read_until_final(communicator)
    await communicator.disconnect()
    assert states[-1] == "failed"
    stored = await sync_to_async(Build.objects.get)(pk=build.pk)
    assert "../escape.txt" in stored.error
    assert any("../escape.txt" in text for _, text in lines)
