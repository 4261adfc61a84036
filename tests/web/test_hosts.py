"""Hosts: one-time join tokens, each host's own credential, heartbeats that
mark a silent host unreachable, and the scheduler's placement."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from paas.applications.models import AuditEntry, Release
from paas.applications.services import app_create
from paas.core.errors import PermissionDenied
from paas.hosts.agent_client import AgentClient, AgentRefused, AgentUntrusted
from paas.hosts.models import DesiredState, Host, HostState, Instance, JoinToken
from paas.hosts.scheduler import NothingFits, schedule
from paas.hosts.services import host_client, host_heartbeat, join_token_create
from runtime_agent.api.tls import certificate_fingerprint
from tests.support.agent_harness import REPO, AgentProcess, cleanup
from tests.web.deploy_support import agent_root

pytestmark = pytest.mark.django_db(transaction=True)
GiB = 1024**3


PIN = ":".join(["AB"] * 32)


def _join(
    client: Any, token: str, name: str = "host-1", url: str = "https://127.0.0.1:7999",
    fingerprint: str = PIN,
) -> Any:  # fmt: skip
    return client.post(
        "/api/v1/hosts/join",
        {"join_token": token, "name": name, "agent_url": url, "tls_fingerprint": fingerprint},
        content_type="application/json",
    )


def _token_from_command(*args: str) -> str:
    out = io.StringIO()
    call_command("host_join_token", "--note", "test", *args, stdout=out)
    return out.getvalue().strip()


def test_only_admins_make_join_tokens(alice: Any, admin_user: Any) -> None:
    with pytest.raises(PermissionDenied):
        join_token_create(user=alice)
    _, raw = join_token_create(user=admin_user)
    assert raw.startswith("join_")
    assert not JoinToken.objects.filter(digest=raw).exists()  # stored hashed


def test_a_join_token_works_once(client: Any) -> None:
    token = _token_from_command()
    first = _join(client, token)
    assert first.status_code == 201, first.content
    assert first.json()["host"] == "host-1"
    assert len(first.json()["credential"]) >= 32
    again = _join(client, token, name="host-2")
    assert again.status_code == 403
    assert "unknown, used or expired" in again.json()["message"]
    assert list(Host.objects.values_list("name", flat=True)) == ["host-1"]


def test_an_expired_or_made_up_token_is_refused(client: Any) -> None:
    token = _token_from_command()
    JoinToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _join(client, token).status_code == 403
    assert _join(client, "join_made-up").status_code == 403
    assert _join(client, _token_from_command(), url="file:///etc").status_code == 400
    assert not Host.objects.exists()


def test_a_join_needs_an_https_url_and_the_agents_certificate_fingerprint(client: Any) -> None:
    plain = _join(client, _token_from_command(), url="http://127.0.0.1:7999")
    assert plain.status_code == 400 and "https://" in plain.json()["message"]
    bad = _join(client, _token_from_command(), fingerprint="AB:CD")
    assert bad.status_code == 400 and bad.json()["field"] == "tls_fingerprint"
    assert not Host.objects.exists()
    # The bare hex form (any case) is pinned in openssl's form.
    assert _join(client, _token_from_command(), fingerprint="ab" * 32).status_code == 201
    assert Host.objects.get().tls_fingerprint == PIN


def test_the_agent_client_sends_nothing_without_tls_and_a_pin() -> None:
    with pytest.raises(AgentUntrusted, match="over TLS only"):
        AgentClient("http://127.0.0.1:7999", "credential", fingerprint=PIN).info()
    with pytest.raises(AgentUntrusted, match="No certificate is pinned"):
        AgentClient("https://127.0.0.1:7999", "credential", fingerprint="").info()


@pytest.fixture
def joined_agent(client: Any) -> Iterator[tuple[Host, AgentProcess]]:
    """A real agent started with the credential its host got when joining."""
    with agent_root() as root:
        agent = AgentProcess.fresh(root)
        response = _join(client, _token_from_command(), url=agent.url,
                         fingerprint=agent.fingerprint)  # fmt: skip
        agent.token = response.json()["credential"]
        try:
            agent.start()
            yield Host.objects.get(name="host-1"), agent
        finally:
            cleanup(agent)


def test_a_joined_agent_answers_its_own_credential_and_turns_ready(
    joined_agent: tuple[Host, AgentProcess],
) -> None:
    host, agent = joined_agent
    assert host.agent_url.startswith("https://")
    assert host.tls_fingerprint == agent.fingerprint  # the join pinned its certificate
    assert host_heartbeat(host_id=host.pk) == HostState.READY
    host.refresh_from_db()
    assert host.memory_bytes > 0 and host.cpus > 0 and host.agent_version == "v1"
    assert host.last_heartbeat_at is not None
    with pytest.raises(AgentRefused, match="re-join the host"):
        AgentClient(
            agent.url, "another-hosts-credential-0123456789", fingerprint=agent.fingerprint
        ).info()


def test_an_agent_with_another_certificate_is_not_trusted_until_the_host_joins_again(
    client: Any, joined_agent: tuple[Host, AgentProcess], settings: Any
) -> None:
    host, agent = joined_agent
    assert host_heartbeat(host_id=host.pk) == HostState.READY
    pinned = host.tls_fingerprint
    # The agent comes back with a new key (its certificate was lost or replaced).
    assert agent.terminate() == 0
    shutil.rmtree(agent.root / "tls")
    agent.start()
    assert agent.fingerprint != pinned
    expected = (f"agent at {agent.url} presented a certificate with fingerprint "
                f"{agent.fingerprint}, pinned {pinned}")  # fmt: skip
    with pytest.raises(AgentUntrusted, match=re.escape(expected)):
        host_client(host).info()
    # Not trusted at once, without waiting for the silence timeout.
    settings.PAAS_HOST_TIMEOUT_S = 3600
    assert host_heartbeat(host_id=host.pk) == HostState.UNREACHABLE
    assert expected in Host.objects.get(pk=host.pk).last_error
    assert AuditEntry.objects.filter(action="host.untrusted", target="host-1").exists()
    # A plain join token does not replace a joined host's pin...
    taken = _join(client, _token_from_command(), url=agent.url, fingerprint=agent.fingerprint)
    assert taken.status_code == 409 and "--rejoin host-1" in taken.json()["message"]
    # ...a re-join token made for it does (a new credential too).
    rejoin = _token_from_command("--rejoin", "host-1")
    other = _join(client, rejoin, name="host-2", url=agent.url, fingerprint=agent.fingerprint)
    assert other.status_code == 403 and "for host 'host-1'" in other.json()["message"]
    rejoin = _token_from_command("--rejoin", "host-1")
    again = _join(client, rejoin, url=agent.url, fingerprint=agent.fingerprint)
    assert again.status_code == 201, again.content
    assert Host.objects.get(pk=host.pk).tls_fingerprint == agent.fingerprint
    assert agent.terminate() == 0
    agent.token = again.json()["credential"]
    agent.start()
    assert host_heartbeat(host_id=host.pk) == HostState.READY
    assert Host.objects.count() == 1


def test_a_silent_host_becomes_unreachable_and_ready_again(
    joined_agent: tuple[Host, AgentProcess], settings: Any
) -> None:
    host, agent = joined_agent
    assert host_heartbeat(host_id=host.pk) == HostState.READY
    agent.kill()
    settings.PAAS_HOST_TIMEOUT_S = 3600
    assert host_heartbeat(host_id=host.pk) == HostState.READY  # not silent for long yet
    settings.PAAS_HOST_TIMEOUT_S = 0.001
    assert host_heartbeat(host_id=host.pk) == HostState.UNREACHABLE
    assert "did not answer" in Host.objects.get(pk=host.pk).last_error
    agent.start()
    assert host_heartbeat(host_id=host.pk) == HostState.READY


def _host(name: str, memory: int, state: HostState = HostState.READY) -> Host:
    return Host.objects.create(name=name, agent_url="https://127.0.0.1:1", memory_bytes=memory,
                               state=state)  # fmt: skip


def _running(app: Any, host: Host, index: int, memory: int) -> None:
    release, _ = Release.objects.get_or_create(app=app, number=1, defaults={"image": "x"})
    Instance.objects.create(
        app=app, release=release, process_type="web", index=index, host=host,
        container_name=f"{app.name}.v1.web.{index}", memory_bytes=memory,
        desired=DesiredState.RUNNING,
    )  # fmt: skip


def test_the_scheduler_spreads_a_process_type_over_ready_hosts(alice: Any) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="spread")
    a, b = _host("a", 4 * GiB), _host("b", 2 * GiB)
    _host("drained", 64 * GiB, HostState.DRAINING)
    _host("gone", 64 * GiB, HostState.UNREACHABLE)
    chosen = schedule(app_id=app.pk, process_type="web", memory_bytes=GiB, count=4)
    assert sorted(h.name for h in chosen[:2]) == ["a", "b"]
    assert sorted(h.name for h in chosen) == ["a", "a", "b", "b"]
    _running(app, a, 1, GiB)
    assert [h.name for h in schedule(app_id=app.pk, process_type="web",
                                     memory_bytes=GiB, count=1)] == ["b"]  # fmt: skip
    assert b.pk


def test_the_scheduler_refuses_clearly_when_nothing_fits(alice: Any) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="big")
    with pytest.raises(NothingFits, match="No host is ready"):
        schedule(app_id=app.pk, process_type="web", memory_bytes=GiB, count=1)
    host = _host("small", 2 * GiB)
    _running(app, host, 1, GiB + GiB // 2)
    with pytest.raises(NothingFits, match="No ready host has 1024 MiB free .* is 512 MiB"):
        schedule(app_id=app.pk, process_type="web", memory_bytes=GiB, count=1)


def test_the_local_agent_is_registered_once_with_its_credential_in_its_token_file(
    tmp_path: Any,
) -> None:
    token_file = tmp_path / "agent" / "token"
    args = ["host_register_local", "--agent-url", "https://127.0.0.1:7070",
            "--agent-fingerprint", PIN, "--token-file", str(token_file)]  # fmt: skip
    call_command(*args, stdout=io.StringIO())
    host = Host.objects.get(name="local")
    assert host.tls_fingerprint == PIN
    assert token_file.read_text().strip() == host.token
    assert token_file.stat().st_mode & 0o777 == 0o600
    call_command(*args, stdout=io.StringIO())
    assert Host.objects.count() == 1
    assert token_file.read_text().strip() == host.token
    assert JoinToken.objects.get().host == host  # it joined through a join token
    # The local agent's certificate changed: the next start pins the new one.
    new_pin = ":".join(["CD"] * 32)
    args[args.index(PIN)] = new_pin
    call_command(*args, stdout=io.StringIO())
    assert Host.objects.get().tls_fingerprint == new_pin
    assert Host.objects.get().token == host.token


def test_an_admin_makes_a_join_token_in_the_admin_and_sees_it_once(admin_client: Any) -> None:
    response = admin_client.post("/admin/hosts/jointoken/add/", {"note": "rack 2"}, follow=True)
    assert response.status_code == 200
    token = JoinToken.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    assert any(token.prefix in m and "shown only now" in m for m in shown), shown
    assert token.note == "rack 2" and token.used_at is None
    listing = admin_client.get("/admin/hosts/jointoken/").content.decode()
    assert token.prefix in listing


def test_an_admin_drains_a_host_from_the_admin(admin_client: Any) -> None:
    host = _host("busy", GiB)
    Host.objects.filter(pk=host.pk).update(token="the-agents-own-credential-123")
    admin_client.post("/admin/hosts/host/", {"action": "make_draining",
                                             "_selected_action": [host.pk]})  # fmt: skip
    assert Host.objects.get(pk=host.pk).state == HostState.DRAINING
    page = admin_client.get(f"/admin/hosts/host/{host.pk}/change/").content.decode()
    assert "busy" in page and "the-agents-own-credential-123" not in page


def test_the_join_command_pins_the_certificate_the_agent_will_serve(
    live_server: Any, tmp_path: Any
) -> None:
    root = tmp_path / "agent-root"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_AGENT_")}
    done = subprocess.run(
        [sys.executable, "-m", "runtime_agent.join", "--control-plane", live_server.url,
         "--join-token", _token_from_command(), "--name", "host-9",
         "--agent-url", "https://10.0.0.9:7070"],
        env={**env, "PAAS_AGENT_ROOT": str(root), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    host = Host.objects.get(name="host-9")
    assert host.tls_fingerprint == certificate_fingerprint(root / "tls" / "cert.pem")
    assert (root / "token").read_text().strip() == host.token
