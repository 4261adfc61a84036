"""The classic demo, end to end on real parts: upload the hello-world sample,
a real Celery worker builds it into the real registry, the release runs on a
real agent process, and nginx routes `Host: hello.localhost` to it. Then
config changes, a rollback, scaling, lifecycle controls, a zero-downtime
redeploy, a failing release and the reconcile."""

from __future__ import annotations

import http.client
from typing import Any

import pytest

from paas.accounts.services import api_token_create
from paas.applications.models import App, AuditEntry, Release, ReleaseState
from paas.applications.releases import (
    config_set,
    formation_publish,
    formation_scale,
    release_create_from_image,
    release_rollback,
)
from paas.applications.services import app_create
from paas.core.errors import ValidationFailed
from paas.hosts import deploy, lifecycle
from paas.hosts.deploy import _place
from paas.hosts.instances import instance_ensure
from paas.hosts.models import Instance, InstanceState
from paas.hosts.reconcile import reconcile
from paas.hosts.services import host_client
from paas.logs.models import LogLine
from runtime_agent.host.errors import ImageNotFound
from tests.support.agent_harness import AgentProcess
from tests.support.processes import free_port
from tests.support.registry import TestRegistry
from tests.support.router import TestRouter
from tests.web.deploy_support import (
    add_host,
    background_load,
    container_names,
    get,
    upload,
    use_registry_settings,
    wait_for,
    wait_release,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

HOST = "hello.localhost"


@pytest.fixture
def platform(
    agent: AgentProcess, router: TestRouter, workers: Any, settings: Any, build_env: dict[str, str]
) -> Any:
    """A worker and this process agree on the router, registry and deploy settings."""
    use_registry_settings(settings, build_env)
    first_tcp = free_port()  # published ports come from a range free right now
    deploy_env = {
        **router.env, "PAAS_DRAIN_SECONDS": "0.5", "PAAS_HEALTH_TIMEOUT_S": "30",
        "PAAS_TCP_PORTS_FIRST": str(first_tcp), "PAAS_TCP_PORTS_LAST": str(first_tcp + 2),
        # Beside it, never overlapping (the default 30000-39999 may hold first_tcp);
        # one host on loopback publishes no route port anyway.
        "PAAS_ROUTE_PORTS_FIRST": str(first_tcp + 3), "PAAS_ROUTE_PORTS_LAST": str(first_tcp + 5),
    }  # fmt: skip
    # As the worker's: this process restarts and stops instances too (the
    # lifecycle test), each drained min(PAAS_DRAIN_SECONDS, 5 s) before.
    settings.PAAS_HEALTH_TIMEOUT_S, settings.PAAS_DRAIN_SECONDS = 30.0, 0.5
    workers.env.update(deploy_env)
    add_host(agent)
    workers.start()
    yield router.http_port
    for name in container_names(agent):
        agent.request("DELETE", f"/v1/containers/{name}?force=1")


def _served(port: int) -> str:
    status, body = get(port, HOST)
    return body if status == 200 else ""


def _instances(number: int) -> list[Instance]:
    return list(
        Instance.objects.filter(release__number=number).select_related("host").order_by("index")
    )


def test_upload_build_release_run_route_config_rollback_scale(
    client: Any, alice: Any, platform: int, agent: AgentProcess
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello")
    v1 = wait_release("hello", 1, timeout_s=600)  # the first pull of the stack is slow
    assert v1.state == ReleaseState.CURRENT, v1.error
    assert get(platform, HOST) == (200, "Hello, world from hello-v1-web-1\n")
    assert get(platform, "nobody.localhost")[0] == 404
    assert v1.build is not None and v1.image.endswith(v1.build.image_digest)

    config_set(user=alice, app=app, values={"GREETING": "Bonjour"})
    assert wait_release("hello", 2).state == ReleaseState.CURRENT
    assert get(platform, HOST) == (200, "Bonjour from hello-v2-web-1\n")
    # After the drain, only v2's container is left on the agent.
    wait_for(lambda: container_names(agent) == ["hello.v2.web.1"], 30, "v1 to be removed")
    assert Release.objects.get(app=app, number=2).config == {"GREETING": "Bonjour"}

    release_rollback(user=alice, app=app, number=1)
    v3 = wait_release("hello", 3)
    assert (v3.state, v3.description) == (ReleaseState.CURRENT, "Rollback to v1")
    assert get(platform, HOST) == (200, "Hello, world from hello-v3-web-1\n")

    formation_scale(user=alice, app=app, process_type="web", count=3)
    three = {f"Hello, world from hello-v3-web-{n}\n" for n in (1, 2, 3)}
    # Healthy instances join the router when the converge switches it.
    wait_for(lambda: {get(platform, HOST)[1] for _ in range(30)} == three, 120, "spread over 3")
    assert all(i.healthy for i in _instances(3)) and len(_instances(3)) == 3
    wait_for(lambda: len(container_names(agent)) == 3, 30, "exactly three containers")

    formation_scale(user=alice, app=app, process_type="web", count=1)
    wait_for(lambda: container_names(agent) == ["hello.v3.web.1"], 60, "scaled down to one")
    assert {get(platform, HOST)[1] for _ in range(5)} == {"Hello, world from hello-v3-web-1\n"}
    actions = set(AuditEntry.objects.filter(app=app).values_list("action", flat=True))
    assert {"config.set", "release.rollback", "formation.scale", "deploy"} <= actions


def test_rollback_to_a_kept_release_works_after_pruning_deleted_newer_versions(
    client: Any, alice: Any, platform: int, registry: TestRegistry, workers: Any
) -> None:
    """PAAS_KEEP_IMAGES=1 counts releases: the third build deletes v1's
    image but not v2's (the newest release when it ran, though no longer
    the newest version), so a rollback to v2 runs v2's image; a rollback to
    v1 fails saying its image was deleted, and v2's keeps serving."""
    workers.stop_all()
    workers.env["PAAS_KEEP_IMAGES"] = "1"
    workers.start()
    app_create(user=alice, team=alice.personal_team, name="hello")
    releases = []
    for n in (1, 2, 3):  # distinct sources: three images
        upload(client, alice, "hello", extra={"version.txt": f"{n}\n".encode()})
        release = wait_release("hello", n, timeout_s=600 if n == 1 else 120)
        assert release.state == ReleaseState.CURRENT, release.error
        releases.append(release)
    v1, v2, v3 = (r.image.rpartition("@")[2] for r in releases)
    assert len({v1, v2, v3}) == 3
    with registry.client() as reg:
        with pytest.raises(ImageNotFound):
            reg.get_manifest("hello", v1)  # pruned: neither kept nor serving
        assert reg.get_manifest("hello", v2)[1] == v2
        versions = [t for t in reg.list_tags("hello") if not t.startswith("build-")]
        assert sorted(versions) == ["v2", "v3"]

    release_rollback(user=alice, app=App.objects.get(name="hello"), number=2)
    v4 = wait_release("hello", 4)
    assert (v4.state, v4.description) == (ReleaseState.CURRENT, "Rollback to v2"), v4.error
    assert v4.image == releases[1].image
    assert get(platform, HOST) == (200, "Hello, world from hello-v4-web-1\n")

    # v1's image is gone (though the agent may still hold a copy): refused, v4 serves on.
    release_rollback(user=alice, app=App.objects.get(name="hello"), number=1)
    v5 = wait_release("hello", 5)
    assert v5.state == ReleaseState.FAILED
    assert v5.error.startswith("Rollback to v1: its image was deleted from the registry"), v5.error
    assert get(platform, HOST) == (200, "Hello, world from hello-v4-web-1\n")


def test_instance_and_app_lifecycle_is_observed_through_the_agent(
    client: Any, alice: Any, platform: int, agent: AgentProcess
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello")
    assert wait_release("hello", 1, timeout_s=600).state == ReleaseState.CURRENT
    name = "hello.v1.web.1"

    def agent_state() -> str:
        return str(agent.request("GET", f"/v1/containers/{name}")[1]["state"])

    lifecycle.instance_action(user=alice, app=app, name=name, action="stop")
    assert agent_state() == "exited"
    assert get(platform, HOST)[0] == 503  # the app is known, nothing healthy serves it
    lifecycle.instance_action(user=alice, app=app, name=name, action="start")
    assert agent_state() == "running"
    assert _served(platform).startswith("Hello")

    pid_before = agent.request("GET", f"/v1/containers/{name}")[1]["pid"]
    lifecycle.instance_action(user=alice, app=app, name=name, action="restart")
    assert agent.request("GET", f"/v1/containers/{name}")[1]["pid"] != pid_before
    assert _served(platform).startswith("Hello")

    lifecycle.instance_action(user=alice, app=app, name=name, action="kill", signal="KILL")
    # The agent's restart policy brings it back; the reconcile sees it running again.
    wait_for(lambda: agent_state() == "running", 30, "the killed instance to be restarted")

    deploy.app_set_running(user=alice, app=app, running=False)
    assert agent_state() == "exited"
    assert get(platform, HOST)[0] == 503
    deploy.app_set_running(user=alice, app=app, running=True)
    assert agent_state() == "running"
    assert _served(platform).startswith("Hello")

    lifecycle.app_restart(user=alice, app=app)
    assert _served(platform).startswith("Hello")

    # Through the API the worker acts (only it may switch the router).
    _, raw = api_token_create(user=alice, name="cli")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    response = client.post(f"/api/v1/apps/hello/instances/{name}/stop", **auth)
    assert response.status_code == 202, response.content
    wait_for(lambda: agent_state() == "exited", 30, "the API's stop")
    assert client.post("/api/v1/apps/hello/actions/start", **auth).status_code == 202
    wait_for(lambda: _served(platform).startswith("Hello"), 30, "the API's start")
    assert client.post("/api/v1/apps/hello/actions/explode", **auth).status_code == 400
    logged = list(AuditEntry.objects.filter(app=app).values_list("action", "result"))
    for action in ("instance.stop", "instance.start", "instance.restart", "instance.kill",
                   "app.stop", "app.start", "app.restart"):  # fmt: skip
        assert (action, "ok") in logged


def test_a_redeploy_drops_no_request_and_a_failing_release_leaves_the_old_one(
    client: Any, alice: Any, platform: int, agent: AgentProcess
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello")
    assert wait_release("hello", 1, timeout_s=600).state == ReleaseState.CURRENT

    with background_load(platform, HOST, duration_s=600) as load:
        bodies = load.bodies
        wait_for(lambda: bodies["Hello, world from hello-v1-web-1"] > 20, 30, "load on v1")
        config_set(user=alice, app=app, values={"GREETING": "Two"})
        assert wait_release("hello", 2).state == ReleaseState.CURRENT
        wait_for(lambda: bodies["Two from hello-v2-web-1"] > 20, 30, "load on v2")
        wait_for(lambda: container_names(agent) == ["hello.v2.web.1"], 30, "v1 removed")
        config_set(user=alice, app=app, values={"CRASH_ON_START": "1"})
        v3 = wait_release("hello", 3)
        served = bodies["Two from hello-v2-web-1"]
        wait_for(lambda: bodies["Two from hello-v2-web-1"] > served + 20, 30, "v2 still serving")
    report = load.report
    assert report.failed == 0, report.errors[:5]
    assert set(bodies) == {"Hello, world from hello-v1-web-1", "Two from hello-v2-web-1"}
    print(f"zero-downtime load: {report.ok} ok, {report.retries} retries")

    assert v3.state == ReleaseState.FAILED
    assert v3.error.startswith("web.1 exited with code 3; its last log lines:"), v3.error
    assert "CRASH_ON_START is set: exiting with code 3" in v3.error
    assert Release.objects.get(app=app, number=2).state == ReleaseState.CURRENT
    # The release is failed first (another run of its deploy must see that),
    # then its instance is stopped and removed.
    wait_for(lambda: container_names(agent) == ["hello.v2.web.1"], 30, "v3's instance removed")
    said = list(LogLine.objects.filter(app=app, source="platform").values_list("text", flat=True))
    assert "v2 is live" in said
    assert any(t.startswith("v3 failed: web.1 exited with code 3") for t in said), said


def test_a_retried_deploy_and_the_reconcile_leave_exactly_the_desired_containers(
    client: Any, alice: Any, platform: int, agent: AgentProcess, workers: Any
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello")
    assert wait_release("hello", 1, timeout_s=600).state == ReleaseState.CURRENT
    formation_scale(user=alice, app=app, process_type="web", count=2)
    wait_for(lambda: len(container_names(agent)) == 2, 60, "two instances")

    # A worker that died half-way through v2's deploy: its first instance
    # was made, then the task is delivered again to a new worker.
    workers.stop_all()
    release = config_set(user=alice, app=app, values={"GREETING": "Again"})
    assert release is not None
    Release.objects.filter(pk=release.pk).update(state=ReleaseState.DEPLOYING)
    formation = app.formation.get(process_type="web")
    first = _place(release, formation, [1])[0]
    instance_ensure(first)
    workers.start()
    from paas.hosts.tasks import deploy_release

    deploy_release.delay(release.pk)  # and once more, as a duplicate delivery
    assert wait_release("hello", 2).state == ReleaseState.CURRENT
    wanted = ["hello.v2.web.1", "hello.v2.web.2"]
    wait_for(lambda: container_names(agent) == wanted, 30, "only v2's two containers")

    # Drift: one instance's container vanished, a stray of ours appeared.
    client_ = host_client(first.host)
    client_.remove("hello.v2.web.2", force=True)
    status, _ = agent.request(
        "POST", "/v1/containers",
        {"name": "hello.v9.web.1", "image": release.image, "labels": {"paas.app": "hello"}},
    )  # fmt: skip
    assert status == 201
    report = reconcile()
    assert report.started == ["hello.v2.web.2"]
    assert report.removed == ["hello.v9.web.1"]
    assert container_names(agent) == wanted
    assert Instance.objects.get(container_name="hello.v2.web.2").state in (
        InstanceState.STARTING,
        InstanceState.RUNNING,
    )
    assert reconcile().started == reconcile().removed == []


RELEASE_PY = b"""import os, sys
print("migrating the database", flush=True)
sys.exit(int(os.environ.get("RELEASE_EXIT", "0")))
"""
PROCFILE = b"web: python3 app.py\nrelease: python3 release.py\n"


def test_the_release_phase_runs_before_the_switch_and_a_failing_one_changes_nothing(
    client: Any, alice: Any, platform: int, agent: AgentProcess
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello", extra={"Procfile": PROCFILE, "release.py": RELEASE_PY})
    v1 = wait_release("hello", 1, timeout_s=600)
    assert v1.state == ReleaseState.CURRENT, v1.error
    assert v1.process_types["release"] == "python3 release.py"
    assert list(app.formation.values_list("process_type", flat=True)) == ["web"]
    assert get(platform, HOST) == (200, "Hello, world from hello-v1-web-1\n")

    config_set(user=alice, app=app, values={"RELEASE_EXIT": "4", "GREETING": "Never"})
    v2 = wait_release("hello", 2)
    assert v2.state == ReleaseState.FAILED
    assert v2.error.startswith("the release command (python3 release.py) exited with code 4")
    assert "migrating the database" in v2.error
    assert not Instance.objects.filter(release=v2).exists()  # no instance ever started
    assert container_names(agent) == ["hello.v1.web.1"]  # its container is gone too
    assert get(platform, HOST) == (200, "Hello, world from hello-v1-web-1\n")


def test_deleting_an_app_removes_its_containers_route_images_and_rows(
    client: Any, alice: Any, platform: int, agent: AgentProcess, registry: TestRegistry
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello")
    assert wait_release("hello", 1, timeout_s=600).state == ReleaseState.CURRENT
    with registry.client() as reg:
        assert "v1" in reg.list_tags("hello")

    refused = client.post("/apps/hello/deploy/delete", {"confirm": "hell"}, follow=True)
    assert "(hello) to confirm its deletion" in refused.content.decode()
    assert App.objects.filter(pk=app.pk).exists()

    client.post("/apps/hello/deploy/delete", {"confirm": "hello"})
    wait_for(lambda: not App.objects.filter(pk=app.pk).exists(), 60, "the app to be deleted")
    assert get(platform, HOST)[0] == 404  # the router let go with the rows
    wait_for(lambda: container_names(agent) == [], 30, "its containers to be removed")
    assert not Release.objects.exists() and not Instance.objects.exists()
    with registry.client() as reg:
        assert reg.list_tags("hello") == []
    entry = AuditEntry.objects.get(action="app.delete")
    assert (entry.target, entry.actor_name) == ("hello", "alice")


def test_an_app_deploys_an_image_of_its_teams_own_app(
    client: Any, alice: Any, bob: Any, platform: int, agent: AgentProcess,
    registry: TestRegistry, build_env: dict[str, str], settings: Any,
) -> None:  # fmt: skip
    app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello")
    assert wait_release("hello", 1, timeout_s=600).state == ReleaseState.CURRENT
    copy = app_create(user=alice, team=alice.personal_team, name="copy")
    release = release_create_from_image(user=alice, app=copy, image=f"{registry.host}/hello:v1")
    assert release.image.startswith(f"{registry.host}/hello@sha256:")
    assert wait_release("copy", 1).state == ReleaseState.CURRENT
    assert get(platform, "copy.localhost") == (200, "Hello, world from copy-v1-web-1\n")

    bobs = app_create(user=bob, team=bob.personal_team, name="bobs")
    with pytest.raises(ValidationFailed, match="not an app of this team"):
        release_create_from_image(user=bob, app=bobs, image=f"{registry.host}/hello:v1")
    with pytest.raises(ValidationFailed, match="elsewhere.example is not one of them"):
        release_create_from_image(user=alice, app=copy, image="elsewhere.example/hello:v1")
    with pytest.raises(ValidationFailed, match="has no image"):
        release_create_from_image(user=alice, app=copy, image=f"{registry.host}/hello:v99")
    assert not Release.objects.filter(app=bobs).exists()

    # Through the API the worker resolves the tag (it holds the registry's credentials).
    _, raw = api_token_create(user=alice, name="cli")
    response = client.post("/api/v1/apps/copy/releases", {"image": f"{registry.host}/hello:v1"},
                           content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {raw}")  # fmt: skip
    assert response.status_code == 202, response.content
    v2 = wait_release("copy", 2)
    assert (v2.state, v2.image) == (ReleaseState.CURRENT, release.image)
    refused = client.post("/api/v1/apps/copy/releases", {"image": "elsewhere.example/x:1"},
                          content_type="application/json",
                          HTTP_AUTHORIZATION=f"Bearer {raw}")  # fmt: skip
    assert refused.status_code == 400


def test_a_published_tcp_port_reaches_the_instance_on_its_host(
    client: Any, alice: Any, platform: int, agent: AgentProcess
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello")
    assert wait_release("hello", 1, timeout_s=600).state == ReleaseState.CURRENT
    assert _instances(1)[0].host_port is None
    v2 = formation_publish(user=alice, app=app, process_type="web", tcp_port=8080)
    assert v2 is not None and v2.description == "Publish web TCP 8080"
    assert wait_release("hello", 2).state == ReleaseState.CURRENT
    (instance,) = _instances(2)
    assert instance.tcp_port == 8080 and instance.host_port is not None
    info = agent.request("GET", f"/v1/containers/{instance.container_name}")[1]
    assert info["ports"][0]["host_port"] == instance.host_port
    # Straight to the host's port, not through the router (like docker run -p).
    conn = http.client.HTTPConnection("127.0.0.1", instance.host_port, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"Hello, world from hello-v2-web-1\n"
    conn.close()
