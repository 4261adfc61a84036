"""Nothing the platform writes is open to another local user: after a real
build (an upload through the view, a real worker process), a walk of the data
dir the platform made and of the worker's build dir finds nothing a user other
than root and the service user could read, write, list, or run setuid."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.applications.services import app_create
from paas.builds.models import Build, BuildState
from tests.support.private import exposed as _exposed
from tests.web.archives import HELLO, targz
from tests.web.deploy_support import wait_build_final

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_real_build_leaves_nothing_another_user_can_read(
    client, alice, workers, build_env, settings, tmp_path
):
    data = tmp_path / "var"  # made by the platform's processes, not here
    settings.UPLOAD_DIR = data / "uploads"
    workers.env["PAAS_DATA_DIR"] = str(data)
    workers.start()
    app_create(user=alice, team=alice.personal_team, name="private")
    client.force_login(alice)
    response = client.post(
        "/apps/private/builds",
        {"source": SimpleUploadedFile("src.tar.gz", targz(HELLO))},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["build"])
    wait_build_final(build, 120)
    assert build.state == BuildState.SUCCEEDED, build.error

    builds = Path(build_env["PAAS_BUILD_DIR"])
    written = {p.name for p in data.iterdir()}
    assert {"secret_key", "static", "uploads"} <= written
    assert any(builds.iterdir())
    # The data dir, and each root in it on its own (as if the data dir let
    # everyone in); the build dir is one such root (var/builds by default).
    for root in [data, *data.iterdir(), builds]:
        assert _exposed(root) == [], root


def test_the_walk_finds_what_another_user_could_read(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    (open_dir / "secret").write_text("x")
    os.chmod(open_dir / "secret", 0o644)
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    (closed / "inside").write_text("x")
    os.chmod(closed / "inside", 0o644)
    assert [line.split()[0] for line in _exposed(open_dir)] == [
        str(open_dir),
        str(open_dir / "secret"),
    ]
    assert _exposed(closed) == []
