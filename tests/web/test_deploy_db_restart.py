"""PostgreSQL restarted (immediate mode: every connection cut, crash
recovery at start) while a real worker is half-way through a deploy: the
deploy completes once, or fails with a reason; the release never stays
pending or deploying, and the app never has two current releases.

PostgreSQL only (marked ``postgres_only``): the SQLite pass of scripts/test
deselects it (shown in its summary), and the PostgreSQL pass, which sets
PAAS_TEST_POSTGRES=1, runs it (last, in a pytest session of its own: the
restart cuts every connection the session holds) and fails it outright if
its database is not PostgreSQL. It restarts the cluster the test run uses, found through the
database itself (its data directory and version), with pg_ctl as the
cluster's owner: pg_ctl starts it again with the options it last ran with.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

from paas.applications.models import App, Formation, Release, ReleaseCause, ReleaseState
from paas.applications.services import app_create
from paas.hosts import deploy
from paas.hosts.models import Instance, InstanceState
from paas.hosts.tasks import deploy_release
from tests.support.agent_harness import AgentProcess
from tests.support.images import BuiltImage, build_busybox_image
from tests.support.registry import TestRegistry
from tests.support.router import TestRouter
from tests.web.deploy_support import (
    container_names,
    get,
    wait_for,
    wait_release,
)

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]

MIB = 2**20
# v2's web process waits for the test's go-ahead (a file the test puts in
# its rootfs), so the restart lands while the worker polls its health check.
GATED = "sh -c 'until [ -e /go ]; do sleep 0.1; done; exec httpd -f -p 8080 -h /www'"


def _pg_setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        (value,) = cursor.fetchone()
    return str(value)


def restart_postgres(log: Path) -> None:
    """Restart the cluster this run's database lives in, the hard way."""
    data = _pg_setting("data_directory")
    major = int(_pg_setting("server_version_num")) // 10000
    pg_ctl = f"/usr/lib/postgresql/{major}/bin/pg_ctl"
    argv = ["runuser", "-u", "postgres", "--", pg_ctl, "restart", "-D", data,
            "-m", "immediate", "-w", "-t", "60"]  # fmt: skip
    with open(log, "ab") as out:  # the restarted server keeps writing its log here
        done = subprocess.run(argv, cwd="/", stdout=out, stderr=subprocess.STDOUT, timeout=90)
    assert done.returncode == 0, log.read_text(errors="replace")
    connections.close_all()  # this process's connection died with the server


def _app(user: Any) -> App:
    app = app_create(user=user, team=user.personal_team, name="pgr")
    Formation.objects.create(app=app, process_type="web", count=1, memory_bytes=64 * MIB)
    return app


def test_a_deploy_across_a_postgresql_restart_ends_current_once(
    alice: Any, platform: int, agent: AgentProcess, busybox: BuiltImage, workers: Any,
    router: TestRouter, registry: TestRegistry, tmp_path: Path,
) -> None:  # fmt: skip
    assert connection.vendor == "postgresql", (
        "this test restarts PostgreSQL: run it in scripts/test's PostgreSQL pass "
        f"(DATABASE_URL=postgres://...), not on {connection.vendor}"
    )
    app = _app(alice)
    v1 = Release.objects.create(app=app, number=1, image=busybox.pinned_ref,
                                cause=ReleaseCause.IMAGE, process_types={})  # fmt: skip
    assert deploy.release_deploy(release_id=v1.pk) == ReleaseState.CURRENT

    workers.env.update({**router.env, "PAAS_DRAIN_SECONDS": "0.5",
                        "PAAS_HEALTH_TIMEOUT_S": "120"})  # fmt: skip
    workers.start()
    second = build_busybox_image(registry, tmp_path / "second", body="the second release\n")
    v2 = Release.objects.create(app=app, number=2, image=second.pinned_ref,
                                cause=ReleaseCause.IMAGE, process_types={"web": GATED})  # fmt: skip
    deploy_release.delay(v2.pk)
    name = "pgr.v2.web.1"
    # The worker has started v2 and polls it, writing what it sees each time.
    wait_for(
        lambda: Instance.objects.filter(container_name=name, state=InstanceState.RUNNING).exists(),
        120, "v2 started and polled by the worker",
    )  # fmt: skip

    restart_postgres(tmp_path / "postgres.log")
    restarted = time.monotonic()
    (agent.root / "containers" / name / "rootfs" / "go").write_text("")

    release = wait_release("pgr", 2, timeout_s=180)
    print(f"v2 {release.state} {time.monotonic() - restarted:.1f} s after PostgreSQL restarted")
    assert release.state == ReleaseState.CURRENT, release.error
    assert list(Release.objects.filter(app=app, state=ReleaseState.CURRENT)) == [release]
    assert Release.objects.get(pk=v1.pk).state == ReleaseState.RETIRED
    assert get(platform, "pgr.localhost") == (200, "the second release\n")
    # Once v1 has drained: one row and one container for the one slot.
    wait_for(
        lambda: list(Instance.objects.filter(app=app).values_list("container_name", flat=True))
        == [name] and container_names(agent) == [name],
        60, "v1's instance retired",
    )  # fmt: skip
