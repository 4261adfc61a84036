"""Who a host's route ports answer comes with the join (paas/hosts/
route_sources.py): the address this machine reaches the host from, or
PAAS_ROUTER_SOURCES; ``python -m runtime_agent.join`` keeps it in the
agent's root, where the agent reads it at start."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from runtime_agent.config import AgentConfig
from runtime_agent.host.cmd import run
from tests.support.agent_harness import REPO
from tests.support.netns_hosts import Lan, lan

pytestmark = pytest.mark.django_db(transaction=True)
PIN = ":".join(["AB"] * 32)


@pytest.fixture
def network() -> Iterator[Lan]:
    with lan() as net:
        yield net


def _token() -> str:
    out = io.StringIO()
    call_command("host_join_token", "--note", "test", stdout=out)
    return out.getvalue().strip()


def _join(client: Any, url: str, name: str = "host-1") -> Any:
    body = {"join_token": _token(), "name": name, "agent_url": url, "tls_fingerprint": PIN}
    return client.post("/api/v1/hosts/join", body, content_type="application/json")


def test_a_host_across_the_network_is_told_the_address_the_router_comes_from(
    client: Any, network: Lan
) -> None:
    host = network.add_host()
    joined = _join(client, f"https://{host.address}:7070")
    assert joined.status_code == 201, joined.content
    # The router and the health check reach the host's LAN from this address.
    assert joined.json()["router_sources"] == [f"{network.gateway}/32"]


def test_the_setting_names_the_router_sources_instead(client: Any, settings: Any) -> None:
    settings.PAAS_ROUTER_SOURCES = ["192.0.2.0/28", "198.51.100.7/32"]
    joined = _join(client, "https://10.0.0.9:7070")
    assert joined.json()["router_sources"] == ["192.0.2.0/28", "198.51.100.7/32"]


def test_a_host_on_this_machine_needs_none(client: Any, settings: Any) -> None:
    settings.PAAS_ROUTER_SOURCES = ["192.0.2.0/28"]
    assert _join(client, "https://127.0.0.1:7070").json()["router_sources"] == []


def _run_join(live_server: Any, root: Path, name: str, url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_AGENT_")}
    done = subprocess.run(
        [sys.executable, "-m", "runtime_agent.join", "--control-plane", live_server.url,
         "--join-token", _token(), "--name", name, "--agent-url", url],
        env={**env, "PAAS_AGENT_ROOT": str(root), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_join_command_leaves_them_where_the_agent_reads_them(
    live_server: Any, tmp_path: Path, settings: Any
) -> None:
    settings.PAAS_ROUTER_SOURCES = ["192.0.2.0/28", "198.51.100.7/32"]
    root = tmp_path / "agent-root"
    _run_join(live_server, root, "host-9", "https://10.0.0.9:7070")
    config = AgentConfig.from_env({"PAAS_AGENT_ROOT": str(root)}, generate_token=False)
    assert config.router_sources == (IPv4Network("192.0.2.0/28"), IPv4Network("198.51.100.7/32"))
    # Joined again as a host on this machine: nothing from outside any more.
    _run_join(live_server, root, "host-10", "https://127.0.0.1:7071")
    config = AgentConfig.from_env({"PAAS_AGENT_ROOT": str(root)}, generate_token=False)
    assert config.router_sources == ()


NO_ROUTE = """
import django
django.setup()
from ipaddress import IPv4Address
from paas.core.errors import ValidationFailed
from paas.hosts.route_sources import source_towards
try:
    source_towards(IPv4Address("192.0.2.10"))
except ValidationFailed as exc:
    print(exc.message)
"""


def test_a_host_this_machine_has_no_route_to_is_refused_with_the_reason() -> None:
    """Seen from a machine with no route (a namespace with loopback only)."""
    ns = f"rs{secrets.token_hex(3)}"
    run(["ip", "netns", "add", ns])
    try:
        done = run(["ip", "netns", "exec", ns, sys.executable, "-c", NO_ROUTE],
                   env={**os.environ, "PYTHONPATH": str(REPO),
                        "DJANGO_SETTINGS_MODULE": "paas.settings"}, timeout=60)  # fmt: skip
    finally:
        run(["ip", "netns", "del", ns])
    said = done.stdout.decode()
    assert "no route to 192.0.2.10" in said and "PAAS_ROUTER_SOURCES" in said, said


# The limited broadcast address: connect() on a UDP socket to it fails
# (EACCES without SO_BROADCAST), so the route lookup refuses it.
NO_ROUTE_URL = "https://255.255.255.255:7070"


def test_a_bad_join_token_is_refused_before_any_route_lookup(client: Any) -> None:
    """A caller without a valid token learns nothing of this machine's routes
    and makes it look up none: it gets the token's refusal, not the lookup's."""
    # With a good token this URL fails at the route lookup...
    looked_up = _join(client, NO_ROUTE_URL)
    assert looked_up.status_code == 400, looked_up.content
    assert "no route to 255.255.255.255" in looked_up.json()["message"]
    # ...without one, it never gets there.
    for token in ("join_made-up", "", "x" * 5000):
        body = {"join_token": token, "name": "host-1", "agent_url": NO_ROUTE_URL,
                "tls_fingerprint": PIN}  # fmt: skip
        refused = client.post("/api/v1/hosts/join", body, content_type="application/json")
        assert refused.status_code == 403, refused.content
        assert refused.json() == {
            "error": "join_refused",
            "message": "This join token is unknown, used or expired; ask for a new one.",
        }


def test_a_spent_join_token_is_refused_before_any_route_lookup(client: Any) -> None:
    body = {"join_token": _token(), "name": "host-1", "agent_url": "https://127.0.0.1:7070",
            "tls_fingerprint": PIN}  # fmt: skip
    assert (
        client.post("/api/v1/hosts/join", body, content_type="application/json").status_code == 201
    )
    again = client.post("/api/v1/hosts/join", {**body, "agent_url": NO_ROUTE_URL},
                        content_type="application/json")  # fmt: skip
    assert again.status_code == 403 and again.json()["error"] == "join_refused", again.content
