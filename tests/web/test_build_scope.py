"""Through the real pipeline (upload, a real Celery worker, the registry):
a Dockerfile may start FROM its own team's apps, never another team's, and
an uploaded COPY cannot write through a link to the host."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.applications.services import app_create
from paas.builds.models import Build, BuildState
from tests.web.archives import HELLO, targz
from tests.web.deploy_support import wait_build_final

pytestmark = pytest.mark.django_db(transaction=True)


def upload(client, user, app: str, files: dict[str, bytes]) -> Build:
    client.force_login(user)
    response = client.post(
        f"/apps/{app}/builds",
        {"source": SimpleUploadedFile("src.tar.gz", targz(files))},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.content
    return Build.objects.get(pk=response.json()["build"])


def test_from_is_scoped_to_the_builds_team(client, alice, bob, workers):
    app_create(user=alice, team=alice.personal_team, name="alice-base")
    app_create(user=alice, team=alice.personal_team, name="alice-derived")
    app_create(user=bob, team=bob.personal_team, name="bob-derived")
    workers.start()
    base = wait_build_final(upload(client, alice, "alice-base", HELLO))
    assert base.state == BuildState.SUCCEEDED, base.error
    dockerfile = {"Dockerfile": b"FROM alice-base:v1\nRUN true\n"}

    bobs = wait_build_final(upload(client, bob, "bob-derived", dockerfile))
    assert bobs.state == BuildState.FAILED
    assert "Dockerfile line 1: FROM alice-base:v1" in bobs.error
    assert (
        not bobs.log_lines.filter(text__contains="base image")
        .filter(text__contains="alice-base")
        .exists()
    )  # refused before any pull

    alices = wait_build_final(upload(client, alice, "alice-derived", dockerfile))
    assert alices.state == BuildState.SUCCEEDED, alices.error


def test_an_uploaded_copy_through_a_planted_link_leaves_the_host_alone(
    client, alice, workers, tmp_path
):
    """The issue's first attack as a tenant would send it: an ordinary
    upload whose first COPY source holds a link that stays inside the
    archive (so the intake accepts it) but, once copied to /D in the layer,
    climbs to the host's root and down to a host file; the second source
    then writes a file of the same name."""
    canary = tmp_path / "host-canary"
    canary.mkdir()
    (canary / "secret").write_text("host secret\n")
    depth = 45  # deeper than any build directory: the climb ends at "/"
    deep = "/".join(f"d{i}" for i in range(depth))
    link = tarfile.TarInfo(f"{deep}/secret")
    link.type = tarfile.SYMTYPE
    link.linkname = "../" * depth + str(canary / "secret").lstrip("/")
    files = {
        "Dockerfile": f"FROM stack\nCOPY {deep} second/ /D/\n".encode(),
        "second/secret": b"tenant wrote this\n",
    }
    app_create(user=alice, team=alice.personal_team, name="copy-through")
    workers.start()
    build = wait_build_final(upload_tar(client, alice, "copy-through", files, [link]))
    assert build.state == BuildState.SUCCEEDED, build.error  # the intake let it in
    assert (canary / "secret").read_text() == "host secret\n"
    assert os.listdir(canary) == ["secret"]


def upload_tar(client, user, app: str, files: dict[str, bytes], extra) -> Build:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    client.force_login(user)
    response = client.post(
        f"/apps/{app}/builds",
        {"source": SimpleUploadedFile("src.tar.gz", buf.getvalue())},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.content
    return Build.objects.get(pk=response.json()["build"])
