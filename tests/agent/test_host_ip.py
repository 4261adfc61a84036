"""A published port's host_ip ends up in an nft ruleset: it is parsed as an
address (never pattern-matched), so a newline can never start a rule."""

from __future__ import annotations

import pytest

from runtime_agent import wire
from runtime_agent.host.errors import InvalidRequest
from runtime_agent.net import ports
from runtime_agent.wire import PortBinding

# glibc's inet_aton, which validated host_ip before, accepts every one of these.
HOSTILE = [
    "127.0.0.1\nflush ruleset",
    "127.0.0.1 accept",
    "1",
    "0x7f.1",
    "127.0.0.1\n",
]


@pytest.mark.parametrize("host_ip", HOSTILE)
def test_the_api_refuses_a_host_ip_that_is_not_exactly_an_address(host_ip: str) -> None:
    body = {"name": "web", "image": "r/x:1", "ports": [
        {"container_port": 80, "host_port": 8080, "host_ip": host_ip}
    ]}  # fmt: skip
    with pytest.raises(InvalidRequest) as exc:
        wire.parse_create(body)
    assert exc.value.data["field"] == "ports[0].host_ip"


@pytest.mark.parametrize("host_ip", HOSTILE)
def test_the_network_refuses_it_too(host_ip: str) -> None:
    with pytest.raises(InvalidRequest):
        ports.validate([PortBinding(container_port=80, host_port=8080, host_ip=host_ip)])


def test_a_valid_address_is_kept_in_its_canonical_form() -> None:
    [binding] = ports.validate([PortBinding(80, 8080, host_ip="127.0.0.1")])
    assert binding.host_ip == "127.0.0.1"
    rules = ports.render_publish("t", {"c": ports.Published("10.0.0.2", (binding,))}, "br")
    assert rules.splitlines()[2] == (
        'add rule ip t publish ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.0.0.2:80 comment "c"'
    )
