"""Nothing the platform writes is open to another local user: after a real
build (an upload through the view, a real worker process), a walk of the data
dir the platform made and of the worker's build dir finds nothing a user other
than root and the service user could read, write, list, or run setuid."""

from __future__ import annotations

import os
import stat
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


def _named(roots: list[Path], name: str) -> list[tuple[Path, os.stat_result]]:
    """Where (walking as root, links not followed) entries called ``name`` lie."""
    found = []
    for root in roots:
        for top, dirs, files, top_fd in os.fwalk(root, follow_symlinks=False):
            for f in (*dirs, *files):
                if f == name:
                    found.append((Path(top) / f, os.stat(f, dir_fd=top_fd, follow_symlinks=False)))
    return found


def test_kept_trees_of_a_build_show_no_other_user_a_setuid_binary_or_a_device(
    client, alice, workers, build_env, settings, tmp_path
):
    # A tenant's RUN step makes a setuid-root shell (and tries a device
    # node, which its user namespace refuses). The worker keeps the step's
    # tree (the team's layer cache: setuid to the range's root there, to
    # real root in the packed layer): no other user may reach either.
    data = tmp_path / "var"
    settings.UPLOAD_DIR = data / "uploads"
    workers.env["PAAS_DATA_DIR"] = str(data)
    workers.start()
    app_create(user=alice, team=alice.personal_team, name="suid")
    client.force_login(alice)
    dockerfile = (
        b"FROM stack\n"
        b"RUN cp /bin/dash /suid-sh && chmod 4755 /suid-sh"
        b" && (mknod /null-again c 1 3 || echo no mknod)\n"
    )
    response = client.post(
        "/apps/suid/builds",
        {"source": SimpleUploadedFile("src.tar.gz", targz({"Dockerfile": dockerfile}))},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["build"])
    wait_build_final(build, 120)
    assert build.state == BuildState.SUCCEEDED, build.error
    builds, cache = Path(build_env["PAAS_BUILD_DIR"]), Path(build_env["PAAS_BUILD_CACHE_DIR"])
    kept = [p for p, st in _named([builds, cache], "suid-sh") if st.st_mode & stat.S_ISUID]
    assert _named([builds, cache], "null-again") == []  # no device node was made
    assert kept  # the tree this test guards is there (a walk from an open root finds it)
    for root in [builds, cache, data]:
        assert _exposed(root) == [], root
