"""The upload view validates before it stores anything."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.applications.services import app_create
from paas.builds.models import Build
from tests.web.archives import HELLO, targz

pytestmark = pytest.mark.django_db


@pytest.fixture
def app(alice):
    return app_create(user=alice, team=alice.personal_team, name="up")


def _post(client, data, name="src.tar.gz"):
    return client.post(
        "/apps/up/builds",
        {"source": SimpleUploadedFile(name, data)},
        HTTP_ACCEPT="application/json",
    )


def test_it_refuses_a_file_that_is_not_an_archive(client, alice, app, settings):
    client.force_login(alice)
    response = _post(client, b"#!/bin/sh\necho not an archive\n", "src.tar.gz")
    assert response.status_code == 400
    assert ".zip" in response.json()["message"]
    assert Build.objects.count() == 0
    assert not any(settings.UPLOAD_DIR.glob("*"))


def test_it_refuses_an_empty_file(client, alice, app, settings):
    client.force_login(alice)
    response = _post(client, b"")
    assert response.status_code == 400
    assert "empty" in response.json()["message"]
    assert not any(settings.UPLOAD_DIR.glob("*"))


def test_it_refuses_an_upload_over_the_limit(client, alice, app, settings):
    settings.PAAS_MAX_UPLOAD_BYTES = 1024
    client.force_login(alice)
    response = _post(client, b"\x1f\x8b" + b"x" * 4096)
    assert response.status_code == 400
    assert "larger than the limit" in response.json()["message"]
    assert Build.objects.count() == 0
    assert not any(settings.UPLOAD_DIR.glob("*"))


def test_it_refuses_a_body_announced_over_the_limit_before_reading_it(client, alice, app, settings):
    settings.PAAS_MAX_UPLOAD_BYTES = 1024
    client.force_login(alice)
    big = SimpleUploadedFile("src.tar.gz", b"\x1f\x8b" + b"x" * 200_000)
    response = client.post("/apps/up/builds", {"source": big}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["message"] == "The upload is larger than the limit of 1024 bytes."
    assert Build.objects.count() == 0
    assert not any(settings.UPLOAD_DIR.glob("*"))


def test_it_asks_for_a_file_when_none_is_sent(client, alice, app):
    client.force_login(alice)
    response = client.post("/apps/up/builds", {}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert "Choose a .tar" in response.json()["message"]


def test_it_stores_the_archive_and_queues_a_numbered_build(client, alice, app, settings):
    client.force_login(alice)
    sent = targz(HELLO)
    first = _post(client, sent).json()
    second = _post(client, sent).json()
    assert (first["number"], second["number"]) == (1, 2)
    build = Build.objects.get(pk=first["build"])
    assert build.state == "queued"
    assert build.archive_size > 0
    with open(build.archive_path, "rb") as fh:
        assert fh.read() == sent


def test_it_redirects_a_plain_form_post_to_the_build_page(client, alice, app):
    client.force_login(alice)
    response = client.post(
        "/apps/up/builds", {"source": SimpleUploadedFile("s.tar.gz", targz(HELLO))}
    )
    assert response.status_code == 302
    assert "/apps/up/builds/" in response["Location"]


def test_an_anonymous_visitor_is_sent_to_sign_in(client, app):
    response = client.get("/apps/up/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
