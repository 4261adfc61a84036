"""The hosts page: admins only; capacity and reserved memory, instances,
heartbeat age and state per host; drain, make ready, remove (refused while
instances remain); a join token shown once."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from paas.applications.models import AuditEntry
from paas.hosts.models import Host, HostState, JoinToken
from paas.hosts.services import host_join
from paas.metrics.models import MetricPoint, Tier
from tests.web.pages.support import GiB, deployed_app, host, messages_of

pytestmark = pytest.mark.django_db
PIN = ":".join(["AB"] * 32)  # an agent certificate's fingerprint, as a join sends it


@pytest.fixture
def busy(alice: Any) -> Host:
    """4 GiB, with one running 1 GiB instance of alice's app."""
    h = host("busy-1")
    deployed_app(alice, "shop", h, ["running"])
    return h


def test_people_who_are_not_admins_get_a_404(client: Any, alice: Any, busy: Host) -> None:
    client.force_login(alice)
    assert client.get("/hosts/").status_code == 404
    response = client.post("/hosts/", {"host": busy.pk, "action": "drain"})
    assert response.status_code == 404
    assert Host.objects.get(pk=busy.pk).state == HostState.READY
    assert client.post("/hosts/", {"action": "join-token"}).status_code == 404
    assert not JoinToken.objects.exists()


def test_an_admin_sees_capacity_usage_instances_and_heartbeat(client: Any, admin_user: Any,
                                                              busy: Host) -> None:  # fmt: skip
    host("idle-2", memory=8 * GiB)
    client.force_login(admin_user)
    page = client.get("/hosts/").content.decode()
    assert 'aria-label="memory reserved on busy-1"' in page
    assert 'aria-valuenow="25"' in page  # 1 GiB of 4
    assert "1.0\xa0GB / 4.0\xa0GB (25%)" in page
    assert "1/1 running" in page and "0/0 running" in page
    assert "<code>shop.v1.web.1</code>" in page  # which instances run where
    ages = [int(age) for age in re.findall(r"(\d+) s ago", page)]
    assert len(ages) == 2 and min(ages) >= 4  # the heartbeats were 4 s old when made
    assert "Ready" in page


def test_drain_then_make_ready(client: Any, admin_user: Any, busy: Host) -> None:
    client.force_login(admin_user)
    drained = client.post("/hosts/", {"host": busy.pk, "action": "drain"}, follow=True)
    assert any("Draining busy-1" in m for m in messages_of(drained))
    assert Host.objects.get(pk=busy.pk).state == HostState.DRAINING
    assert "Make ready" in drained.content.decode()
    client.post("/hosts/", {"host": busy.pk, "action": "ready"})
    assert Host.objects.get(pk=busy.pk).state == HostState.READY
    actions = list(AuditEntry.objects.values_list("action", flat=True))
    assert "host.draining" in actions and "host.ready" in actions


def test_a_host_with_instances_is_not_removed(client: Any, admin_user: Any, busy: Host) -> None:
    client.force_login(admin_user)
    response = client.post("/hosts/", {"host": busy.pk, "action": "remove"}, follow=True)
    assert any("still has 1 instance(s): drain it first" in m for m in messages_of(response))
    assert Host.objects.get(pk=busy.pk).state == HostState.READY


def test_an_empty_host_is_removed_and_leaves_the_page(client: Any, admin_user: Any) -> None:
    empty = host("empty-3")
    client.force_login(admin_user)
    response = client.post("/hosts/", {"host": empty.pk, "action": "remove"}, follow=True)
    assert any("Removed empty-3" in m for m in messages_of(response))
    assert Host.objects.get(pk=empty.pk).state == HostState.REMOVED
    assert 'data-host="empty-3"' not in response.content.decode()


def test_unknown_hosts_and_actions_are_refused(client: Any, admin_user: Any, busy: Host) -> None:
    client.force_login(admin_user)
    assert client.post("/hosts/", {"host": "9999", "action": "drain"}).status_code == 404
    assert client.post("/hosts/", {"host": "x", "action": "drain"}).status_code == 404
    odd = client.post("/hosts/", {"host": busy.pk, "action": "explode"}, follow=True)
    assert any("Unknown action" in m for m in messages_of(odd))


def test_a_join_token_is_shown_once_and_lets_a_host_join(client: Any, admin_user: Any) -> None:
    client.force_login(admin_user)
    response = client.post("/hosts/", {"action": "join-token", "note": "rack 3"})
    page = response.content.decode()
    assert "no-store" in response["Cache-Control"]
    raw = page.split('id="join-token-value">')[1].split("<")[0]
    assert raw.startswith("join_")
    assert JoinToken.objects.get().note == "rack 3"
    assert raw not in client.get("/hosts/").content.decode()
    joined, _ = host_join(raw_token=raw, name="new-host", agent_url="https://127.0.0.1:7998",
                          tls_fingerprint=PIN)  # fmt: skip
    assert joined.name == "new-host"


def test_a_rejoin_token_is_for_one_host(client: Any, admin_user: Any, busy: Host) -> None:
    client.force_login(admin_user)
    page = client.post("/hosts/", {"action": "rejoin-token", "host": busy.pk}).content.decode()
    assert "Re-join token for busy-1" in page and "--name busy-1" in page
    token = JoinToken.objects.get()
    assert token.rejoin_id == busy.pk
    assert client.post("/hosts/", {"action": "rejoin-token", "host": "77"}).status_code == 404


def test_no_hosts_is_a_clear_empty_state(client: Any, admin_user: Any) -> None:
    client.force_login(admin_user)
    assert "No host has joined yet" in client.get("/hosts/").content.decode()


def _sample(app: Any, container: str, memory: int, age_s: float) -> None:
    at = timezone.now() - timedelta(seconds=age_s)
    MetricPoint.objects.create(
        app=app, container=container, instance=container.split(".", 2)[2], release=1,
        tier=Tier.FINE, time=at, cpu_ns=0, sampled_at=at, memory_bytes=memory,
    )  # fmt: skip


def test_memory_in_use_is_the_latest_sample_of_each_instance(client: Any, admin_user: Any,
                                                             alice: Any) -> None:  # fmt: skip
    h = host("busy-1")
    shop = deployed_app(alice, "shop", h, ["running", "running"])
    host("idle-2")
    _sample(shop, "shop.v1.web.1", 900 * 2**20, age_s=8)
    _sample(shop, "shop.v1.web.1", 256 * 2**20, age_s=1)  # the latest one counts
    _sample(shop, "shop.v1.web.2", 256 * 2**20, age_s=2)
    _sample(shop, "shop.v1.web.3", 3 * GiB, age_s=1)  # no instance placed: not counted
    client.force_login(admin_user)
    page = client.get("/hosts/").content.decode()
    assert "in use: 512.0\xa0MB (12%)" in page
    assert 'aria-valuenow="12"' in page
    assert "in use: not measured yet" in page  # idle-2


def test_an_old_sample_is_not_memory_in_use(client: Any, admin_user: Any, alice: Any,
                                            settings: Any) -> None:  # fmt: skip
    shop = deployed_app(alice, "shop", host("busy-1"), ["running"])
    _sample(shop, "shop.v1.web.1", 256 * 2**20, age_s=3 * settings.PAAS_METRICS_INTERVAL_S + 5)
    client.force_login(admin_user)
    assert "in use: not measured yet" in client.get("/hosts/").content.decode()


def _rows(page: str) -> dict[str, str]:
    """Each host's row of the hosts table, by host name."""
    return dict(re.findall(r'<tr data-host="([^"]+)">(.*?)</tr>', page, re.S))


def test_an_admin_sees_each_hosts_router_sources_and_whether_they_are_in_sync(
    client: Any, admin_user: Any, settings: Any
) -> None:
    settings.PAAS_ROUTER_SOURCES = ["192.0.2.0/28"]
    remote = "https://10.9.8.7:7070"  # not this machine: it must answer the router
    synced = host("synced")
    Host.objects.filter(pk=synced.pk).update(agent_url=remote, router_sources=["192.0.2.0/28"])
    stale = host("stale")
    Host.objects.filter(pk=stale.pk).update(agent_url=remote, router_sources=["198.51.100.7/32"])
    host("never")  # on this machine, never confirmed: it wants no one
    failing = host("failing")
    retry_at = timezone.now() + timedelta(minutes=5)
    Host.objects.filter(pk=failing.pk).update(
        agent_url=remote, router_sources_failures=3, router_sources_retry_at=retry_at,
        router_sources_error="The agent said <script>alert(1)</script>: refused",
    )  # fmt: skip
    client.force_login(admin_user)
    page = client.get("/hosts/").content.decode()
    rows = _rows(page)
    assert "<th>Router sources</th>" in page

    assert "in sync" in rows["synced"]
    assert "accepted: <code>192.0.2.0/28</code>" in rows["synced"]
    assert "wanted:" not in rows["synced"]

    assert "pending" in rows["stale"]
    assert "accepted: <code>198.51.100.7/32</code>" in rows["stale"]
    assert "wanted: <code>192.0.2.0/28</code>" in rows["stale"]

    assert "pending" in rows["never"]
    assert "accepted: nothing confirmed yet" in rows["never"]
    assert "wanted: no one" in rows["never"]

    assert "failing" in rows["failing"]
    assert "The agent said &lt;script&gt;alert(1)&lt;/script&gt;: refused" in rows["failing"]
    assert "<script>alert" not in page
    assert re.search(r"next try in (4|5)[\s\xa0]minutes", rows["failing"]), rows["failing"]
