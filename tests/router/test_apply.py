"""A config nginx refuses never replaces the one it serves."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime

import pytest

from bench.support.http_load import run_load
from paas.router.errors import RouterConfigRejected, RouterReloadFailed
from paas.router.routes import Route, TlsCert, Upstream
from paas.router.services import RouterState, router_apply, router_status
from tests.support.backends import Backend
from tests.support.router import TestRouter


def _garbage_cert(name: str) -> TlsCert:
    # Made by hand, past tls_cert_load's checks: nginx itself must refuse it.
    return TlsCert(
        cert_pem="-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        key_pem="-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        names=(name,),
        not_after=datetime(2100, 1, 1, tzinfo=UTC),
        fingerprint="ab" * 32,
    )


def test_a_broken_candidate_is_never_applied(router: TestRouter, backends: list[Backend]) -> None:
    good = [Route("web", ("web.localhost",), (Upstream("127.0.0.1", backends[0].port),))]
    router_apply(routes=good)
    before = router_status()
    generations = sorted(p.name for p in (router.directory / "generations").iterdir())

    broken = [
        *good,
        Route("shop", ("shop.example.com",), (), tls=_garbage_cert("shop.example.com")),
    ]
    with pytest.raises(RouterConfigRejected) as refused:
        router_apply(routes=broken)

    assert "cannot load certificate" in refused.value.message
    after = router_status()
    assert after.live_generation == after.serving_generation == before.live_generation
    assert sorted(p.name for p in (router.directory / "generations").iterdir()) == generations
    response = router.get("web.localhost")
    assert response.status == 200
    assert json.loads(response.data)["backend"] == "one"  # type: ignore[attr-defined]
    assert router.get("shop.example.com").status == 404


def test_apply_without_a_running_nginx_makes_the_config_live(tmp_path, settings) -> None:
    settings.PAAS_ROUTER_DIR = tmp_path / "router"
    router_apply(routes=[Route("web", ("web.localhost",), ())])
    status = router_status()
    assert status.state is RouterState.STOPPED
    assert status.live_generation == 1
    assert "web.localhost" in (tmp_path / "router" / "live" / "nginx.conf").read_text()


def test_a_reload_nginx_cannot_carry_out_leaves_the_old_config_live(
    router: TestRouter, backends: list[Backend], settings
) -> None:
    routes = [Route("web", ("web.localhost",), (Upstream("127.0.0.1", backends[0].port),))]
    router_apply(routes=routes)
    before = router_status()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        # `nginx -t` does not bind, so only the reload finds the port taken.
        settings.PAAS_ROUTER_PORT = taken.getsockname()[1]
        with pytest.raises(RouterReloadFailed, match="Address already in use"):
            router_apply(routes=routes)
    settings.PAAS_ROUTER_PORT = router.http_port
    after = router_status()
    assert after.live_generation == after.serving_generation == before.live_generation
    assert router.get("web.localhost").status == 200


def test_the_longest_names_and_many_routes_still_apply(router: TestRouter) -> None:
    # nginx's default server-name hash refuses names over ~50 characters:
    # one tenant's long domain must not break every later apply.
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    routes = [Route(f"app{i}", (f"app{i}.localhost",), ()) for i in range(500)]
    router_apply(routes=[*routes, Route("long", (longest,), ())])
    assert b"long is not running" in router.get(longest).data  # type: ignore[attr-defined]
    assert b"app499 is not running" in router.get("app499.localhost").data  # type: ignore[attr-defined]


RELOADS = 50


def test_reloads_under_load_drop_no_request(router: TestRouter, backends: list[Backend]) -> None:
    """50 graceful reloads under a bounded load lose nothing, and a broken
    config tried between them (every tenth) is refused and never served."""
    ups = [Upstream("127.0.0.1", b.port) for b in backends]
    router_apply(routes=[Route("web", ("web.localhost",), tuple(ups))])
    before = router_status().serving_generation
    assert before is not None
    stop = threading.Event()
    results = []
    load = threading.Thread(
        target=lambda: results.append(
            run_load(
                host="127.0.0.1",
                port=router.http_port,
                host_header="web.localhost",
                workers=2,
                duration_s=300,
                stop=stop,
            )  # fmt: skip
        )
    )
    load.start()
    refused = 0
    try:
        for i in range(RELOADS):
            # Consecutive upstream sets differ, so every apply is a reload.
            good = [Route("web", ("web.localhost",), (ups[i % 3],))]
            router_apply(routes=good)
            if i % 10 == 9:
                broken = [*good, Route("shop", ("shop.example.com",), (),
                                       tls=_garbage_cert("shop.example.com"))]  # fmt: skip
                with pytest.raises(RouterConfigRejected):
                    router_apply(routes=broken)
                refused += 1
    finally:
        stop.set()
        load.join()
    (result,) = results
    status = router_status()
    assert status.serving_generation == status.live_generation == before + RELOADS
    assert refused == RELOADS // 10
    assert router.get("shop.example.com").status == 404  # no broken config was ever live
    assert result.requests > 0
    assert result.failed == 0, result.errors
    assert result.ok == result.requests
    print(f"{RELOADS} reloads under load: {result.ok} ok, {result.failed} failed, "
          f"{result.retries} retries, {refused} broken configs refused")  # fmt: skip


def test_applying_what_is_served_does_not_reload(router: TestRouter) -> None:
    routes = [Route("web", ("web.localhost",), ())]
    router_apply(routes=routes)
    served = router_status()
    router_apply(routes=list(routes))
    assert router_status().serving_generation == served.serving_generation
    router_apply(routes=[Route("web", ("web.localhost", "www.web.example"), ())])
    assert router_status().serving_generation == served.serving_generation + 1  # type: ignore[operator]


def test_the_router_dir_is_root_s_alone(router: TestRouter, backends: list[Backend]) -> None:
    from tests.support.private import exposed

    router_apply(
        routes=[Route("web", ("web.localhost",), (Upstream("127.0.0.1", backends[0].port),))]
    )
    assert router.get("web.localhost").status == 200  # a request, so the logs have a line
    assert exposed(router.directory) == []
