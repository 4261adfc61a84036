"""A tenant controls its custom domains: no name it picks may carry nginx
syntax into the router's config. Names are checked as DNS names when a Route
is made, and quoted again when written."""

from __future__ import annotations

import pytest

from paas.router.errors import InvalidRoute
from paas.router.render import quote
from paas.router.routes import Route, Upstream, app_routes
from paas.router.services import router_apply, router_status
from tests.support.router import TestRouter

HOSTILE = [
    "evil.example; include /etc/shadow",
    'evil.example"',
    "evil.example}",
    "evil.example{",
    "$host.example",
    "~^(.*)$",
    "*.example.com",
    "evil.example\nserver_name x",
    "evil .example",
    "Evil.Example",  # one spelling only: the owner's input is lowercased first
    "a..example",
    "-a.example",
    "a-.example",
    "a" * 64 + ".example",
    ("a" * 60 + ".") * 5 + "example",
    "exämple.com",
    "localhost",
    "10.0.0.1",
    "example.com.",
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_hostname_is_refused(name: str) -> None:
    with pytest.raises(InvalidRoute, match="Hostname refused"):
        Route("web", (name,), ())


def test_a_refused_hostname_never_reaches_the_router(router: TestRouter) -> None:
    router_apply(routes=[Route("web", ("web.localhost",), ())])
    generation = router_status().live_generation
    with pytest.raises(InvalidRoute):
        router_apply(
            routes=app_routes(app="web", hostnames=["web.localhost", "x.y;"], upstreams=())
        )
    assert router_status().live_generation == generation
    assert router.get("web.localhost").status == 503


def test_a_hostname_routed_to_two_apps_is_refused(router: TestRouter) -> None:
    with pytest.raises(InvalidRoute, match="shop.example.com is routed twice"):
        router_apply(
            routes=[
                Route("alice-shop", ("shop.example.com",), ()),
                Route("bob-shop", ("shop.example.com",), ()),
            ]
        )


@pytest.mark.parametrize("name", ["web", "Web", "web_1", "-web", "a" * 64, "we b"])
def test_app_names_are_dns_labels(name: str) -> None:
    if name == "web":
        Route(name, ("web.localhost",), ())
        return
    with pytest.raises(InvalidRoute, match="App name refused"):
        Route(name, ("web.localhost",), ())


@pytest.mark.parametrize(
    ("address", "port"), [("10.0.0.1;", 80), ("example.com", 80), ("10.0.0.1", 0), ("::1", 70000)]
)
def test_upstreams_are_ip_literals_and_ports(address: str, port: int) -> None:
    with pytest.raises(InvalidRoute, match="Upstream"):
        Upstream(address, port)


def test_quoting_refuses_variables_and_escapes_quotes() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    for bad in ["$host", "a\nb", "a\x00"]:
        with pytest.raises(InvalidRoute):
            quote(bad)
