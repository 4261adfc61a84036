"""PostgreSQL down for longer than a deploy task's retry budget (issue 13,
fault 4): after the database is back, the platform converges on its own.

A deploy task retries on a lost database PAAS_DEPLOY_DB_RETRIES times (1, 2,
4 ... 30 s apart: about three minutes by default); then it gives up and the
release is left "deploying" with its app's lock free. The deploy sweep
(paas/hosts/resume.py, on a real beat) resumes it once the database answers:
v2 goes live once, v1 is retired, nothing is half-written. The budget is made
two retries (3 s) through the setting, so the outage outlasts it at once.

PostgreSQL only, like tests/web/test_deploy_db_restart.py: it stops the
cluster the test run uses (scripts/test's own, in its PostgreSQL pass) with
pg_ctl as the cluster's owner, and starts it again with ``pg_ctl restart``,
which starts a stopped server with the options it last ran with.
"""

from __future__ import annotations

import re
import subprocess
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
)
from tests.web.fault_support import FAST_SWEEPS, beat, forget_messages

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]

MIB = 2**20
GAVE_UP = re.compile(
    rb"Task deploy\.release\[[^]]+\] raised unexpected: (Operational|Interface)Error"
)
RETRIED = re.compile(rb"Task deploy\.release\[[^]]+\] retry: Retry in")
# v2's web process waits for the test's go-ahead (a file in its rootfs): the
# worker polls it, writing what it sees, when the database goes away.
GATED = "sh -c 'until [ -e /go ]; do sleep 0.1; done; exec httpd -f -p 8080 -h /www'"


class Cluster:
    """The PostgreSQL cluster this run's database lives in, driven by pg_ctl."""

    def __init__(self, log: Path) -> None:
        self.data = self._setting("data_directory")
        major = int(self._setting("server_version_num")) // 10000
        self.pg_ctl = f"/usr/lib/postgresql/{major}/bin/pg_ctl"
        self.log = log

    @staticmethod
    def _setting(name: str) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting(%s)", [name])
            (value,) = cursor.fetchone()
        return str(value)

    def _pg_ctl(self, *args: str) -> None:
        argv = ["runuser", "-u", "postgres", "--", self.pg_ctl, *args, "-D", self.data,
                "-w", "-t", "60"]  # fmt: skip
        with open(self.log, "ab") as out:  # the started server keeps writing its log here
            done = subprocess.run(argv, cwd="/", stdout=out, stderr=subprocess.STDOUT, timeout=90)
        assert done.returncode == 0, self.log.read_text(errors="replace")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "immediate")
        connections.close_all()  # this process's connection died with the server

    def start(self) -> None:
        self._pg_ctl("restart")  # a stopped server: started with its last options


def _app(user: Any, one: BuiltImage) -> App:
    app = app_create(user=user, team=user.personal_team, name="pgdown")
    Formation.objects.create(app=app, process_type="web", count=1, memory_bytes=64 * MIB)
    v1 = Release.objects.create(app=app, number=1, image=one.pinned_ref,
                                cause=ReleaseCause.IMAGE, process_types={})  # fmt: skip
    assert deploy.release_deploy(release_id=v1.pk) == ReleaseState.CURRENT
    return app


def test_a_deploy_outliving_its_retries_resumes_when_postgresql_is_back(
    alice: Any, platform: int, agent: AgentProcess, workers: Any, router: TestRouter,
    registry: TestRegistry, tmp_path: Path,
) -> None:  # fmt: skip
    assert connection.vendor == "postgresql", (
        "this test stops PostgreSQL: run it in scripts/test's PostgreSQL pass "
        f"(DATABASE_URL=postgres://...), not on {connection.vendor}"
    )
    cluster = Cluster(tmp_path / "postgres.log")
    one = build_busybox_image(registry, tmp_path / "one", body="the first release\n")
    two = build_busybox_image(registry, tmp_path / "two", body="the second release\n")
    app = _app(alice, one)

    workers.env.update({**router.env, **FAST_SWEEPS, "PAAS_DEPLOY_DB_RETRIES": "2",
                        "PAAS_HEALTH_TIMEOUT_S": "120"})  # fmt: skip
    worker_log = tmp_path / "worker-0.log"
    with beat(dict(workers.env), tmp_path):
        workers.start()
        v2 = Release.objects.create(app=app, number=2, image=two.pinned_ref,
                                    cause=ReleaseCause.IMAGE,
                                    process_types={"web": GATED})  # fmt: skip
        deploy_release.delay(v2.pk)
        name = "pgdown.v2.web.1"
        wait_for(
            lambda: Instance.objects.filter(
                container_name=name, state=InstanceState.RUNNING
            ).exists(),
            120, "v2 started and polled by the worker",
        )  # fmt: skip

        cluster.stop()
        try:
            # The task ran out of retries: nothing but the sweep will carry v2 on.
            wait_for(lambda: GAVE_UP.search(worker_log.read_bytes()), 120,
                     "the deploy task to give up")  # fmt: skip
            assert len(RETRIED.findall(worker_log.read_bytes())) == 2  # the budget, spent
        finally:
            cluster.start()
        v2.refresh_from_db()
        assert v2.state == ReleaseState.DEPLOYING  # as the dead task left it
        (agent.root / "containers" / name / "rootfs" / "go").write_text("")

        def settled() -> bool:
            v2.refresh_from_db()
            return v2.state not in (ReleaseState.PENDING, ReleaseState.DEPLOYING)

        wait_for(settled, 180, "v2 to settle once PostgreSQL is back")
        assert v2.state == ReleaseState.CURRENT, v2.error
        wait_for(lambda: container_names(agent) == [name], 60, "v1's instance retired")
        workers.stop_all()
    forget_messages(workers.env["REDIS_URL"])  # the beat's last sweeps

    assert list(Release.objects.filter(app=app, state=ReleaseState.CURRENT)) == [v2]
    assert Release.objects.get(app=app, number=1).state == ReleaseState.RETIRED
    assert get(platform, "pgdown.localhost") == (200, "the second release\n")
    assert list(Instance.objects.filter(app=app).values_list("container_name", flat=True)) == [name]
