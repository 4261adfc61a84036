"""Two appliers racing for the router: the one that applies last routes from
the newest state. (Before the routes were read under the router's lock, a
reconcile that read them before a scale-down, then waited for the lock,
put the removed instances back into the router.)"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from paas.applications.models import Release, ReleaseState
from paas.applications.services import app_create
from paas.hosts.models import DesiredState, Host, HostState, Instance, InstanceState
from paas.hosts.routing import routes_apply
from paas.router import store
from paas.router.config import RouterConfig
from paas.router.services import router_lock
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _instances(app: Any, count: int) -> list[Instance]:
    release = Release.objects.create(app=app, number=1, image="x", state=ReleaseState.CURRENT)
    host = Host.objects.create(name="h1", agent_url="https://127.0.0.1:1", state=HostState.READY)
    return [
        Instance.objects.create(
            app=app,
            release=release,
            process_type="web",
            index=n,
            host=host,
            container_name=f"{app.name}.v1.web.{n}",
            memory_bytes=1,
            state=InstanceState.RUNNING,
            desired=DesiredState.RUNNING,
            healthy=True,
            address=f"10.9.0.{n}",
            port=8080,
        )  # fmt: skip
        for n in (1, 2)
    ]


def _someone_waits_for(lock_file: Path) -> bool:
    """/proc/locks lists a blocked flock as "N: -> FLOCK ... pid maj:min:inode ..."."""
    inode = f":{lock_file.stat().st_ino} "
    lines = Path("/proc/locks").read_text().splitlines()
    return any(
        "-> FLOCK" in line and inode in line and f" {os.getpid()} " in line for line in lines
    )


def test_an_apply_that_waited_for_the_lock_routes_the_state_committed_meanwhile(
    alice: Any, settings: Any, tmp_path: Path
) -> None:
    settings.PAAS_ROUTER_DIR = tmp_path / "router"  # no nginx: the live generation is the proof
    app = app_create(user=alice, team=alice.personal_team, name="shop")
    keep, drop = _instances(app, 2)
    routes_apply()
    config = RouterConfig.from_settings()

    with router_lock():  # a scale-down holding the router
        late = threading.Thread(target=_apply_in_thread)  # a reconcile arriving meanwhile
        late.start()
        wait_until(
            lambda: _someone_waits_for(config.lock_file), timeout_s=10, what="the reconcile to wait"
        )
        Instance.objects.filter(pk=drop.pk).update(desired=DesiredState.STOPPED, healthy=False)
        routes_apply()  # re-entrant: the holder applies without waiting for itself
    late.join(timeout=30)

    assert not late.is_alive()
    [route] = store.live_routes(config)
    assert [u.address for u in route.upstreams] == [keep.address]


def _apply_in_thread() -> None:
    try:
        routes_apply()
    finally:
        connection.close()
