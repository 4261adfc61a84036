"""A worker killed in the middle of a build: the build ends failed, never
stuck in "building", and what the dead build left on the host is removed."""

from __future__ import annotations

import os
import signal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from paas.applications.services import app_create
from paas.builds import services
from paas.builds.models import Build, BuildState
from tests.web.archives import targz
from tests.web.deploy_support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = {"Dockerfile": b'FROM stack\nRUN echo started && sleep 120\nCMD ["true"]\n'}


def _lease_expired(build):
    return Build.objects.filter(pk=build.pk, lease_expires_at__lt=timezone.now()).exists()


def test_a_build_whose_worker_is_killed_ends_failed(client, alice, workers, build_env, settings):
    app_create(user=alice, team=alice.personal_team, name="slow")
    workers.env["PAAS_BUILD_LEASE_SECONDS"] = "6"
    worker = workers.start()
    client.force_login(alice)
    client.post("/apps/slow/builds", {"source": SimpleUploadedFile("s.tar.gz", targz(SLOW))})
    build = Build.objects.get()
    wait_for(lambda: build.log_lines.filter(text__contains="started").exists(), 120, "the step")

    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    build.refresh_from_db()
    assert build.state == BuildState.BUILDING

    # The sweep (a beat task) fails it once the dead worker's lease has run
    # out. (The task itself comes back later, acked late: a second run finds
    # the build no longer queued and does nothing; see test_build_states.)
    settings.BUILD_DIR = build_env["PAAS_BUILD_DIR"]
    for key in ("PAAS_BUILD_BRIDGE", "PAAS_BUILD_SUBNET", "PAAS_BUILD_NFT_TABLE"):
        setattr(settings, key, build_env[key])
    # Wait for the lease the dead worker last renewed to run out (nobody
    # renews it now), then sweep once.
    wait_for(lambda: _lease_expired(build), 120, "the lease to expire")
    assert services.builds_fail_abandoned() == 1
    build.refresh_from_db()
    assert build.state == BuildState.FAILED
    assert "worker running this build stopped" in build.error

    reaped = services.builds_reap_leftovers()
    assert len(reaped) == 1
    work = os.path.join(build_env["PAAS_BUILD_DIR"], "work")
    assert not [d for d in os.listdir(work) if d.startswith("build-")]
    with open("/proc/self/mountinfo") as mounts:
        assert build_env["PAAS_BUILD_DIR"] not in mounts.read()
