"""Accepting an upload for an app, the one service behind the upload page and
the API: the permission and size checks come before the body is read."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.applications.services import app_create
from paas.builds.models import Build, BuildState
from paas.builds.services import build_accept_upload
from paas.core.errors import NotFound, PermissionDenied, ValidationFailed
from tests.web.archives import HELLO, targz

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_app(alice):
    return app_create(user=alice, team=alice.personal_team, name="alices-app")


class Source:
    """The request body, counting whether anyone read it."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return None if self.data is None else SimpleUploadedFile("src.tar.gz", self.data)


def _accept(user, source, app_name="alices-app", content_length=None):
    return build_accept_upload(
        user=user, app_name=app_name, content_length=content_length, read_source=source
    )


def test_it_stores_alices_upload_and_queues_build_number_one(alice, alices_app):
    sent = targz(HELLO)
    build = _accept(alice, Source(sent))
    assert (build.app, build.number, build.state) == (alices_app, 1, BuildState.QUEUED)
    assert build.created_by == alice
    with open(build.archive_path, "rb") as fh:
        assert fh.read() == sent


def test_bob_gets_not_found_and_his_body_is_never_read(bob, alices_app):
    source = Source(targz(HELLO))
    with pytest.raises(NotFound, match="No app named 'alices-app'"):
        _accept(bob, source)
    assert source.reads == 0
    assert Build.objects.count() == 0


def test_a_missing_app_is_not_found(alice):
    with pytest.raises(NotFound):
        _accept(alice, Source(targz(HELLO)), app_name="no-such-app")


def test_carol_the_viewer_may_not_deploy_and_her_body_is_never_read(
    carol_viewer_in_alices_team, alices_app
):
    source = Source(targz(HELLO))
    with pytest.raises(PermissionDenied, match="Viewer"):
        _accept(carol_viewer_in_alices_team, source)
    assert source.reads == 0
    assert Build.objects.count() == 0


def test_a_body_announced_over_the_limit_is_never_read(alice, alices_app, settings):
    settings.PAAS_MAX_UPLOAD_BYTES = 1024
    source = Source(targz(HELLO))
    with pytest.raises(ValidationFailed, match="larger than the limit of 1024 bytes"):
        _accept(alice, source, content_length=str(1024 + 100_000))
    assert source.reads == 0


def test_it_asks_for_the_source_field_when_none_was_sent(alice, alices_app):
    with pytest.raises(ValidationFailed, match="Choose a .tar") as refused:
        _accept(alice, Source(None))
    assert refused.value.data == {"field": "source"}
    assert Build.objects.count() == 0


def test_a_file_that_is_not_an_archive_is_refused_and_not_kept(alice, alices_app, settings):
    with pytest.raises(ValidationFailed, match=".zip"):
        _accept(alice, Source(b"#!/bin/sh\necho hi\n"))
    assert Build.objects.count() == 0
    assert not any(settings.UPLOAD_DIR.glob("*"))
