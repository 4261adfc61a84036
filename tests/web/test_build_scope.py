"""Through the real pipeline (upload, a real Celery worker, the registry):
a Dockerfile may start FROM its own team's apps, never another team's."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.applications.services import app_create
from paas.builds.models import Build, BuildState
from tests.web.archives import HELLO, targz

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


def finished(build: Build, timeout_s: float = 240) -> Build:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        build.refresh_from_db()
        if build.is_final:
            return build
        time.sleep(0.1)
    raise AssertionError(f"build {build.pk} still {build.state}")


def test_from_is_scoped_to_the_builds_team(client, alice, bob, workers):
    app_create(user=alice, team=alice.personal_team, name="alice-base")
    app_create(user=alice, team=alice.personal_team, name="alice-derived")
    app_create(user=bob, team=bob.personal_team, name="bob-derived")
    workers.start()
    base = finished(upload(client, alice, "alice-base", HELLO))
    assert base.state == BuildState.SUCCEEDED, base.error
    dockerfile = {"Dockerfile": b"FROM alice-base:v1\nRUN true\n"}

    bobs = finished(upload(client, bob, "bob-derived", dockerfile))
    assert bobs.state == BuildState.FAILED
    assert "Dockerfile line 1: FROM alice-base:v1" in bobs.error
    assert (
        not bobs.log_lines.filter(text__contains="base image")
        .filter(text__contains="alice-base")
        .exists()
    )  # refused before any pull

    alices = finished(upload(client, alice, "alice-derived", dockerfile))
    assert alices.state == BuildState.SUCCEEDED, alices.error
