"""The follower on real parts: a real agent process running a real container
that writes lines, the agent's authenticated log API, the database and the
WebSocket a browser would watch."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from paas.applications.models import Release
from paas.applications.services import app_create
from paas.hosts.models import Host, Instance, InstanceState
from paas.logs.follower import Follower
from paas.logs.models import LogLine, LogSource
from paas.logs.services import LAYER
from paas.router.routes import Upstream, app_routes
from paas.router.services import router_apply
from tests.support.backends import run_backends
from tests.support.processes import async_wait_until
from tests.support.router import run_router
from tests.web.logs.support import next_lines, texts_until_replayed, watcher

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.root]

TICKER = "i=0; while true; do echo tick-$i; echo warn-$i >&2; i=$((i+1)); sleep 0.02; done"


@contextlib.asynccontextmanager
async def following(**kwargs) -> AsyncIterator[Follower]:
    stop = asyncio.Event()
    follower = Follower(layer=get_channel_layer(LAYER), refresh_s=0.1, **kwargs)
    task = asyncio.create_task(follower.run(stop))
    try:
        yield follower
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def stored(app_id: int) -> list[tuple[int, str, str, str, str, str]]:
    return list(
        LogLine.objects.filter(app_id=app_id)
        .order_by("seq")
        .values_list("seq", "source", "process_type", "instance", "stream", "text")
    )


async def wait_stored(app_id: int, count: int, timeout_s: float = 60) -> list:
    async def enough() -> list | None:
        lines = await sync_to_async(stored)(app_id)
        return lines if len(lines) >= count else None

    return await async_wait_until(enough, timeout_s=timeout_s, what=f"{count} lines stored")


def start_ticker(agent, image_ref: str, name: str) -> None:
    status, info = agent.request(
        "POST", "/v1/containers", {"name": name, "image": image_ref, "cmd": ["sh", "-c", TICKER]}
    )
    assert status == 201, info


def run_instance(app, agent, name: str, *, index: int = 1) -> None:
    host = Host.objects.create(name=f"h-{name}", agent_url=agent.url, token=agent.token,
                               tls_fingerprint=agent.fingerprint)  # fmt: skip
    release, _ = Release.objects.get_or_create(app=app, number=1, defaults={"image": "x"})
    Instance.objects.create(
        app=app, release=release, process_type="web", index=index, host=host,
        container_name=name,
        memory_bytes=64 * 1024 * 1024, state=InstanceState.RUNNING,
    )  # fmt: skip


async def wait_agent_has(agent, name: str, count: int, timeout_s: float = 60) -> None:
    async def enough() -> bool:
        status, lines = await asyncio.to_thread(
            agent.request, "GET", f"/v1/containers/{name}/logs?tail=all"
        )
        return status == 200 and len(lines) >= count

    await async_wait_until(enough, timeout_s=timeout_s, what=f"the agent to have {count} lines")


def numbers(lines: list, prefix: str) -> list[int]:
    return [int(text.split("-")[1]) for *_, text in lines if text.startswith(prefix)]


async def test_it_follows_a_container_and_resumes_after_a_restart_without_duplicates(
    alice, agent, busybox
):
    app = await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="ticker")
    name = f"ticker-{agent.nft_table[-6:]}-web-1"
    start_ticker(agent, busybox.ref, name)
    await sync_to_async(run_instance)(app, agent, name)  # as deploy records it

    connected, _, ws = await watcher("ticker", alice)
    assert connected
    await texts_until_replayed(ws)
    async with following():
        first = await wait_stored(app.pk, 40)
        live = await next_lines(ws, timeout=30)  # the watcher sees them live
    assert {(r[2], r[3], r[4]) for r in live["lines"]} == {("app", "web", "web.1")}
    assert any(r[6].startswith("tick-") for r in live["lines"])

    # The follower is down while the container keeps writing; the agent keeps the lines.
    stopped_at = len(await sync_to_async(stored)(app.pk))
    await wait_agent_has(agent, name, stopped_at + 40)
    async with following():
        lines = await wait_stored(app.pk, stopped_at + 100)

    assert [seq for seq, *_ in lines] == list(range(1, len(lines) + 1))
    assert {(src, proc, inst) for _, src, proc, inst, _, _ in lines} == {
        (LogSource.APP, "web", "web.1")
    }
    ticks, warns = numbers(lines, "tick-"), numbers(lines, "warn-")
    # Every line exactly once, in order, across the restart.
    assert ticks == list(range(len(ticks)))
    assert warns == list(range(len(warns)))
    assert {s for *_, s, t in lines if t.startswith("warn-")} == {"stderr"}
    assert len(first) >= 40
    await ws.disconnect()


ACCESS_LINE = {
    "time": "2026-12-04T12:00:00+00:00", "router": "r1", "host": "shop.localhost",
    "protocol": "HTTP/1.1", "scheme": "http", "upstream": "10.88.0.2:8080",
    "upstream_status": "200", "connect_time": "0.000", "service_time": "0.003",
    "remote_addr": "127.0.0.1", "forwarded_for": "", "error": "",
}  # fmt: skip


def access(app: str, path: str, status: int, msec: float) -> bytes:
    entry = {**ACCESS_LINE, "app": app, "method": "GET", "path": path, "status": status,
             "bytes": 12, "request_time": 0.004, "msec": msec, "request_id": "r" * 32}  # fmt: skip
    return json.dumps(entry).encode() + b"\n"


async def test_router_access_lines_become_router_lines_of_each_app_exactly_once(
    alice, tmp_path: Path
):
    shop = await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="shop")
    blog = await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="blog")
    log_file = tmp_path / "router" / "logs" / "access.log"
    log_file.parent.mkdir(parents=True)
    with open(log_file, "ab") as f:
        f.write(access("shop", "/cart?x=1", 200, 1796385600.123))
        f.write(access("blog", '/"evil"\n\x1b[31m', 404, 1796385600.5))
        f.write(b"not json at all\n")
        f.write(access("unknown-app", "/", 200, 1796385601.0))
    async with following(router_log=log_file):
        shop_lines = await wait_stored(shop.pk, 1)
        blog_lines = await wait_stored(blog.pk, 1)
        with open(log_file, "ab") as f:
            f.write(access("shop", "/after", 500, 1796385602.0))
            f.write(access("shop", "/partial", 200, 1796385603.0)[:20])  # no newline yet
        shop_lines = await wait_stored(shop.pk, 2)
    # A restart resumes after the last stored line; the partial line completes later.
    with open(log_file, "ab") as f:
        f.write(access("shop", "/partial", 200, 1796385603.0)[20:])
    async with following(router_log=log_file):
        shop_lines = await wait_stored(shop.pk, 3)
    shop_lines = await sync_to_async(stored)(shop.pk)
    blog_lines = await sync_to_async(stored)(blog.pk)

    assert [(src, proc, inst) for _, src, proc, inst, _, _ in shop_lines] == [
        ("router", "router", "router")
    ] * 3
    texts = [t for *_, t in shop_lines]
    assert texts[0] == (
        'method=GET path="/cart?x=1" host=shop.localhost status=200 bytes=12 service=4ms '
        f'request_id={"r" * 32} fwd="127.0.0.1"'
    )
    assert 'path="/after"' in texts[1] and "status=500" in texts[1]
    assert 'path="/partial"' in texts[2]
    # What a client put in the path stays quoted and escaped: no raw control bytes.
    (blog_text,) = [t for *_, t in blog_lines]
    assert 'path="/\\"evil\\"\\n\\u001b[31m"' in blog_text
    assert "\x1b" not in blog_text and "\n" not in blog_text


async def test_a_request_through_the_real_router_becomes_a_router_line_of_its_app(
    alice, tmp_path: Path
):
    shop = await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="shop")
    with run_router(tmp_path / "router") as router, run_backends("one") as backends:
        await sync_to_async(router_apply)(
            routes=app_routes(app="shop", hostnames=["shop.localhost"],
                              upstreams=[Upstream("127.0.0.1", backends[0].port)])
        )  # fmt: skip
        response = await asyncio.to_thread(router.get, "shop.localhost", "/cart?id=3")
        assert response.status == 200
        async with following(router_log=router.access_log()):
            ((*_, text),) = await wait_stored(shop.pk, 1)
    assert text.startswith('method=GET path="/cart?id=3" host=shop.localhost status=200 ')
    assert "service=" in text and "request_id=" in text


async def test_it_reads_no_agent_whose_certificate_is_not_the_pinned_one_until_repinned(
    alice, agent, busybox, caplog
):
    app = await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="pinned")
    name = f"pinned-{agent.nft_table[-6:]}-web-1"
    start_ticker(agent, busybox.ref, name)
    await sync_to_async(run_instance)(app, agent, name)
    wrong = ":".join(["AB"] * 32)
    await sync_to_async(Host.objects.filter(name=f"h-{name}").update)(tls_fingerprint=wrong)
    expected = (f"the agent at {agent.url} presented a certificate with fingerprint "
                f"{agent.fingerprint}, pinned {wrong}")  # fmt: skip
    async with following():
        await async_wait_until(
            lambda: any(expected in r.getMessage() for r in caplog.records),
            timeout_s=60,
            what="the follower to report the mismatch",
        )
        # The host joins again with the certificate its agent has: the follower
        # notices the new pin and reads the log (nothing was lost meanwhile).
        await sync_to_async(Host.objects.filter(name=f"h-{name}").update)(
            tls_fingerprint=agent.fingerprint
        )
        lines = await wait_stored(app.pk, 20)
    assert numbers(lines, "tick")[:5] == [0, 1, 2, 3, 4]
