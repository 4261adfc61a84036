"""Which containers the follower reads: deploy's instances, and LogFollow rows."""

from __future__ import annotations

import pytest

from paas.applications.models import Release
from paas.applications.services import app_create
from paas.hosts.models import Host, HostState, Instance, InstanceState
from paas.logs.selectors import FollowTarget, containers_to_follow
from paas.logs.services import log_follow_register, log_follow_retire

pytestmark = pytest.mark.django_db
PIN_1 = ":".join(["A1"] * 32)
PIN_9 = ":".join(["9F"] * 32)


def test_it_follows_instances_that_have_or_are_about_to_have_a_container(alice):
    app = app_create(user=alice, team=alice.personal_team, name="shop")
    release = Release.objects.create(app=app, number=1, image="x")
    host = Host.objects.create(name="h1", agent_url="https://10.0.0.2:7070", token="t-h1",
                               tls_fingerprint=PIN_1)  # fmt: skip
    gone = Host.objects.create(name="h2", agent_url="https://10.0.0.3:7070", token="t-h2",
                               state=HostState.REMOVED)  # fmt: skip
    for index, (state, on) in enumerate(
        [(InstanceState.RUNNING, host), (InstanceState.PENDING, host),
         (InstanceState.STOPPED, host), (InstanceState.LOST, host),
         (InstanceState.RUNNING, gone)], start=1,
    ):  # fmt: skip
        Instance.objects.create(
            app=app, release=release, process_type="web", index=index, host=on,
            container_name=f"shop.v1.web.{index}", memory_bytes=1, state=state,
        )  # fmt: skip
    log_follow_register(app_id=app.pk, agent_url="https://10.0.0.9:7070/", agent_token="t9",
                        agent_fingerprint=PIN_9.lower().replace(":", ""),
                        container="extra", process_type="worker", instance="worker.1")  # fmt: skip
    log_follow_register(app_id=app.pk, agent_url="https://10.0.0.9:7070", agent_token="t9",
                        agent_fingerprint=PIN_9,
                        container="old", process_type="worker", instance="worker.2")  # fmt: skip
    log_follow_retire(agent_url="https://10.0.0.9:7070", containers=["old"])

    h1, h9 = "https://10.0.0.2:7070", "https://10.0.0.9:7070"
    assert containers_to_follow() == [
        FollowTarget(app.pk, h1, "t-h1", "shop.v1.web.1", "web", "web.1", PIN_1),
        FollowTarget(app.pk, h1, "t-h1", "shop.v1.web.2", "web", "web.2", PIN_1),
        FollowTarget(app.pk, h9, "t9", "extra", "worker", "worker.1", PIN_9),
    ]
