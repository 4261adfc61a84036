"""Requests reach the right app through the real nginx: by Host header,
round robin over every instance, keep-alive upstream connections; unknown
hosts and apps without instances get clear pages; every request is logged
as one JSON line naming the app."""

from __future__ import annotations

import io
import json
from collections import Counter

from django.core.management import call_command

from bench.support.http_load import Connection
from paas.router.routes import Route, Upstream
from paas.router.services import router_apply, router_status
from tests.support.backends import Backend
from tests.support.processes import free_port
from tests.support.router import TestRouter


def _up(backend: Backend) -> Upstream:
    return Upstream("127.0.0.1", backend.port)


def test_it_routes_by_host_header(router: TestRouter, backends: list[Backend]) -> None:
    one, two, _ = backends
    router_apply(
        routes=[
            Route("alpha", ("alpha.localhost", "www.alpha.example"), (_up(one),)),
            Route("beta", ("beta.localhost",), (_up(two),)),
        ]
    )
    for host, expected in [
        ("alpha.localhost", "one"),
        ("www.alpha.example", "one"),
        ("beta.localhost", "two"),
        ("BETA.localhost", "two"),  # host names match case-insensitively
    ]:
        response = router.get(host, "/some/path?q=1")
        assert response.status == 200
        body = json.loads(response.data)  # type: ignore[attr-defined]
        assert body["backend"] == expected
        assert body["path"] == "/some/path?q=1"
        assert body["host"] == host.lower()
        assert body["x-forwarded-proto"] == "http"
        assert body["x-request-id"]


def test_it_spreads_requests_round_robin(router: TestRouter, backends: list[Backend]) -> None:
    router_apply(routes=[Route("web", ("web.localhost",), tuple(_up(b) for b in backends))])
    conn = Connection("127.0.0.1", router.http_port)
    seen: Counter[str] = Counter()
    for _ in range(30):
        response = conn.request("GET", "/", {"Host": "web.localhost"})
        seen[json.loads(response.body)["backend"]] += 1
    conn.close()
    assert seen == {"one": 10, "two": 10, "three": 10}


def test_it_keeps_upstream_connections_alive(router: TestRouter, backends: list[Backend]) -> None:
    one = backends[0]
    router_apply(routes=[Route("web", ("web.localhost",), (_up(one),))])
    for _ in range(20):
        assert router.get("web.localhost").status == 200  # a new client connection each time
    assert one.requests == 20
    assert one.connections <= 2  # one per nginx worker at most, reused
    assert json.loads(router.get("web.localhost").data)["connection"] is None  # type: ignore[attr-defined]


def test_an_unknown_host_gets_a_clear_404(router: TestRouter, backends: list[Backend]) -> None:
    router_apply(routes=[Route("web", ("web.localhost",), (_up(backends[0]),))])
    response = router.get("nothing-here.localhost")
    assert response.status == 404
    assert response.getheader("Content-Type", "").startswith("text/html")
    assert b"No app at this address" in response.data  # type: ignore[attr-defined]
    assert backends[0].requests == 0


def test_an_app_without_instances_answers_503(router: TestRouter) -> None:
    router_apply(routes=[Route("sleepy", ("sleepy.localhost",), ())])
    response = router.get("sleepy.localhost")
    assert response.status == 503
    assert b"sleepy is not running" in response.data  # type: ignore[attr-defined]


def test_an_app_whose_instances_refuse_answers_502(router: TestRouter) -> None:
    router_apply(routes=[Route("gone", ("gone.localhost",), (Upstream("127.0.0.1", free_port()),))])
    response = router.get("gone.localhost")
    assert response.status == 502
    assert b"gone is not answering" in response.data  # type: ignore[attr-defined]


def test_every_request_is_logged_as_a_json_line(
    router: TestRouter, backends: list[Backend]
) -> None:
    router_apply(routes=[Route("web", ("web.localhost",), (_up(backends[0]),))])
    router.get("web.localhost", "/hello?x=1")
    router.get("unknown.localhost", "/")
    lines = router.access_lines(count=2)  # each nginx worker writes its own, in any order
    (web,) = [line for line in lines if line["app"] == "web"]
    (unknown,) = [line for line in lines if line["app"] == ""]
    assert web["app"] == "web"
    assert (web["method"], web["path"], web["status"]) == ("GET", "/hello?x=1", 200)
    assert web["upstream"] == f"127.0.0.1:{backends[0].port}"
    assert isinstance(web["request_time"], float)
    assert web["request_id"] and web["upstream_status"] == "200"
    assert (unknown["app"], unknown["status"], unknown["error"]) == ("", 404, "unknown_host")


def test_status_says_which_generation_serves(router: TestRouter) -> None:
    before = router_status()
    router_apply(routes=[Route("sleepy", ("sleepy.localhost",), ())])
    after = router_status()
    assert after.running and after.pid == router.pid
    assert after.serving_generation == after.live_generation == before.live_generation + 1  # type: ignore[operator]


def test_the_status_command_says_what_serves(router: TestRouter) -> None:
    out = io.StringIO()
    call_command("router_status", stdout=out)
    generation = router_status().serving_generation
    assert f"router running: pid {router.pid}" in out.getvalue()
    assert f"serving {generation}" in out.getvalue()


def test_a_dead_instance_costs_no_request_while_another_answers(
    router: TestRouter, backends: list[Backend]
) -> None:
    dead = Upstream("127.0.0.1", free_port())
    router_apply(routes=[Route("web", ("web.localhost",), (dead, _up(backends[0])))])
    for _ in range(6):
        response = router.get("web.localhost")
        assert response.status == 200
        assert json.loads(response.data)["backend"] == "one"  # type: ignore[attr-defined]
