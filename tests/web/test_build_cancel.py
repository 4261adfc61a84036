"""Cancel: a queued build never runs; a running one, cancelled mid-step
through the API, ends `cancelled` within seconds with its step container
killed and no container, mount or directory left behind (real worker,
real runc)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.accounts.services import api_token_create
from paas.applications.services import app_create
from paas.builds.models import Build, BuildState
from tests.web.archives import targz
from tests.web.deploy_support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = b'FROM stack\nRUN echo step-started && sleep 600\nCMD ["true"]\n'


def upload(client, user, name, files):
    client.force_login(user)
    response = client.post(
        f"/apps/{name}/builds",
        {"source": SimpleUploadedFile("src.tar.gz", targz(files))},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201, response.content
    return Build.objects.get(pk=response.json()["build"])


def log_of(build):
    return list(build.log_lines.values_list("text", flat=True))


def mounts_under(path: Path) -> list[str]:
    prefix = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def test_a_queued_build_cancelled_through_the_api_never_runs(client, alice):
    app_create(user=alice, team=alice.personal_team, name="queued")
    build = upload(client, alice, "queued", {"Dockerfile": SLOW})
    _, raw = api_token_create(user=alice, name="cli")
    response = client.post(f"/api/v1/builds/{build.pk}/cancel", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    again = client.post(f"/api/v1/builds/{build.pk}/cancel", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert again.status_code == 409


def test_a_viewer_cannot_cancel(client, alice, carol_viewer_in_alices_team):
    app_create(user=alice, team=alice.personal_team, name="queued")
    build = upload(client, alice, "queued", {"Dockerfile": SLOW})
    _, raw = api_token_create(user=carol_viewer_in_alices_team, name="cli")
    response = client.post(f"/api/v1/builds/{build.pk}/cancel", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403
    build.refresh_from_db()
    assert build.state == BuildState.QUEUED


def test_a_running_build_cancelled_mid_step_leaves_nothing_behind(
    client, alice, workers, build_env
):
    app_create(user=alice, team=alice.personal_team, name="slow")
    workers.start()
    build = upload(client, alice, "slow", {"Dockerfile": SLOW})
    wait_for(lambda: "       step-started" in log_of(build), 240, "the step to start")
    build_dir = Path(build_env["PAAS_BUILD_DIR"])
    runc = ["runc", "--root", str(build_dir / "runc"), "list", "--format", "json"]
    running = json.loads(subprocess.run(runc, capture_output=True, check=True).stdout or "[]")
    assert len(running or []) == 1  # the step's container, while it runs

    _, raw = api_token_create(user=alice, name="cli")
    response = client.post(f"/api/v1/builds/{build.pk}/cancel", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    wait_for(lambda: "-----> Build cancelled" in log_of(build), 30, "the worker to stop")

    build.refresh_from_db()
    assert build.state == BuildState.CANCELLED
    assert build.version is None
    assert "build cancelled" in "\n".join(log_of(build))
    left = json.loads(subprocess.run(runc, capture_output=True, check=True).stdout or "[]")
    assert not left
    assert mounts_under(build_dir) == []
    assert not (build_dir / str(build.pk)).exists()
    assert list((build_dir / "work").iterdir()) == []
    netns = Path("/var/run/netns")
    prefix = f"{build_env['PAAS_BUILD_BRIDGE']}-"
    assert not [n for n in (os.listdir(netns) if netns.exists() else []) if n.startswith(prefix)]


def test_the_build_page_cancels_a_queued_build(client, alice):
    app_create(user=alice, team=alice.personal_team, name="queued")
    build = upload(client, alice, "queued", {"Dockerfile": SLOW})
    page = client.get(f"/apps/queued/builds/{build.pk}/").content.decode()
    assert 'id="cancel"' in page
    response = client.post(f"/apps/queued/builds/{build.pk}/cancel", follow=True)
    assert "Cancelled build #1" in response.content.decode()
    build.refresh_from_db()
    assert build.state == BuildState.CANCELLED
    assert 'id="cancel"' not in client.get(f"/apps/queued/builds/{build.pk}/").content.decode()
