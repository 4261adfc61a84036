"""The HTTP layer: auth matrix, malformed bodies, 404s, idempotency, streams.

These run the real aiohttp app on a real loopback socket, with a small
hand-written fake in place of the container manager: the fake sits at the
API's own boundary (the manager interface), so what is tested here is the
HTTP translation. tests/agent/test_api_containers.py drives the same API
against the real manager, runc and network.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runtime_agent import wire
from runtime_agent.api.server import ApiServer, create_app
from runtime_agent.config import AgentConfig
from runtime_agent.host.errors import Conflict, NotFound
from runtime_agent.wire import ContainerState
from tests.support.agent_harness import server_tls
from tests.support.processes import async_wait_until, port_open

TOKEN = "alice-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeManager:
    """Just enough of ContainerManager's behaviour to drive every route."""

    def __init__(self) -> None:
        self.containers: dict[str, wire.ContainerInfo] = {}
        self.requests: dict[str, wire.CreateContainer] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.auths: list[wire.RegistryAuth | None] = []
        self.log_lines: list[wire.LogLine] = []
        # Gates a test may set: the call waits inside the manager until the
        # test opens the gate (``*_entered`` says it got there).
        self.create_gate: asyncio.Event | None = None
        self.stop_gate: asyncio.Event | None = None
        self.stop_entered = asyncio.Event()
        self.follow_forever = False
        self.follow_closed = asyncio.Event()

    def _get(self, name: str) -> wire.ContainerInfo:
        if name not in self.containers:
            raise NotFound(f"no container named {name!r}", name=name)
        return self.containers[name]

    async def create(
        self, req: wire.CreateContainer, auth: wire.RegistryAuth | None = None
    ) -> wire.ContainerInfo:
        self.calls.append(("create", req.name))
        self.auths.append(auth)
        if self.create_gate is not None:
            await self.create_gate.wait()
        if req.name in self.containers:
            if self.requests[req.name] != req:
                raise Conflict(f"{req.name} exists with another spec", name=req.name)
            return self.containers[req.name]
        state = ContainerState.RUNNING if req.start else ContainerState.CREATED
        info = wire.ContainerInfo(
            name=req.name, image=req.image, image_digest="sha256:" + "a" * 64, state=state
        )
        self.containers[req.name], self.requests[req.name] = info, req
        return info

    async def start_container(self, name: str) -> None:
        self.calls.append(("start", name))
        self.containers[name] = replace(self._get(name), state=ContainerState.RUNNING, pid=42)

    async def stop(self, name: str, timeout_s: float) -> None:
        self.calls.append(("stop", name, timeout_s))
        self._get(name)
        self.stop_entered.set()
        if self.stop_gate is not None:
            await self.stop_gate.wait()
        self.containers[name] = replace(self._get(name), state=ContainerState.EXITED, exit_code=0)

    async def restart(self, name: str, timeout_s: float) -> None:
        self.calls.append(("restart", name, timeout_s))
        info = self._get(name)
        self.containers[name] = replace(info, restart_count=info.restart_count + 1)

    async def kill(self, name: str, signal: int) -> None:
        self.calls.append(("kill", name, int(signal)))
        self._get(name)

    async def remove(self, name: str, force: bool) -> None:
        self.calls.append(("remove", name, force))
        info = self._get(name)
        if info.state == ContainerState.RUNNING and not force:
            raise Conflict(f"{name} is running; stop it or use force", name=name)
        del self.containers[name]

    def list(self) -> list[wire.ContainerInfo]:
        return list(self.containers.values())

    def inspect(self, name: str) -> wire.ContainerInfo:
        return self._get(name)

    async def exec(self, name: str, req: wire.ExecRequest) -> AsyncIterator[Any]:
        self.calls.append(("exec", name, tuple(req.cmd)))
        if self._get(name).state != ContainerState.RUNNING:
            raise Conflict(f"{name} is not running", name=name)
        yield ("stdout", b"hello\n")
        yield ("stderr", b"oops\n")
        yield 3

    async def logs(
        self, name: str, tail: int | None, since: datetime | None, follow: bool
    ) -> AsyncIterator[wire.LogLine]:
        self.calls.append(("logs", name, tail, since, follow))
        self._get(name)
        lines = [ln for ln in self.log_lines if since is None or ln.time >= since.isoformat()]
        for line in lines[-tail:] if tail else lines:
            yield line
        try:
            if follow and self.follow_forever:
                await asyncio.Event().wait()  # until the stream is closed (cancelled)
        finally:
            self.follow_closed.set()

    def stats(self, name: str) -> wire.Stats:
        self._get(name)
        return wire.Stats(cpu_usage_ns=5, memory_bytes=1024, memory_limit_bytes=None, pids=1)

    def host_info(self) -> dict[str, Any]:
        return {"cpus": 2, "memory_bytes": 1 << 30, "disk_bytes": 1 << 34}


class FakeImages:
    def __init__(self) -> None:
        self.gc_calls: list[set[str]] = []

    def pull(self, ref: str, *, auth: wire.RegistryAuth | None = None) -> Any:
        if "missing" in ref:
            raise NotFound(f"no image {ref}")
        return type("Image", (), {"digest": "sha256:" + "b" * 64, "layer_digests": ["x"]})()

    def gc(self, in_use: set[str]) -> list[str]:
        self.gc_calls.append(in_use)
        return ["sha256:old"]


def config(tmp_path: Path, **overrides: Any) -> AgentConfig:
    values = {"root": tmp_path, "token": TOKEN, "stop_grace_s": 7.0, **overrides}
    return AgentConfig(**values)


@pytest.fixture
def manager() -> FakeManager:
    return FakeManager()


@pytest.fixture
def images() -> FakeImages:
    return FakeImages()


@pytest.fixture
async def client(tmp_path, manager, images) -> AsyncIterator[aiohttp.ClientSession]:
    # ApiServer, not aiohttp's TestServer: the test server cancels handlers
    # when a client disconnects, which the agent deliberately does not do.
    app = create_app(manager, images, config(tmp_path, max_body_bytes=4096))
    server = ApiServer(app, "127.0.0.1", 0, drain_timeout_s=1.0, tls=server_tls().context)
    await server.start()
    try:
        async with aiohttp.ClientSession(
            base_url=f"https://127.0.0.1:{server.port}", connector=server_tls().connector()
        ) as c:
            yield c
    finally:
        await server.stop()


CREATE = {"name": "web-1", "image": "127.0.0.1:5000/app:v1", "ports": []}


async def created(client: aiohttp.ClientSession, body: dict[str, Any] = CREATE) -> dict[str, Any]:
    resp = await client.post("/v1/containers", json=body, headers=AUTH)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()


# --- auth --------------------------------------------------------------------------


ROUTES = [
    ("GET", "/v1/info"),
    ("GET", "/v1/containers"),
    ("POST", "/v1/containers"),
    ("GET", "/v1/containers/web-1"),
    ("DELETE", "/v1/containers/web-1"),
    ("POST", "/v1/containers/web-1/start"),
    ("POST", "/v1/containers/web-1/stop"),
    ("POST", "/v1/containers/web-1/restart"),
    ("POST", "/v1/containers/web-1/kill"),
    ("GET", "/v1/containers/web-1/logs"),
    ("GET", "/v1/containers/web-1/stats"),
    ("GET", "/v1/stats"),
    ("POST", "/v1/containers/web-1/exec"),
    ("POST", "/v1/images/pull"),
    ("POST", "/v1/images/gc"),
    ("GET", "/v1/no-such-route"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_it_answers_401_with_a_challenge_without_a_token(client, manager, method, path):
    resp = await client.request(method, path, json=CREATE)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"] == "unauthorized"
    assert manager.calls == []


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_it_answers_403_to_a_wrong_token(client, manager, method, path):
    headers = {"Authorization": "Bearer mallory-token-0123456789abc"}
    resp = await client.request(method, path, json=CREATE, headers=headers)
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"
    assert manager.calls == []


@pytest.mark.parametrize(
    "header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer   ", TOKEN, f"Token {TOKEN}"]
)
async def test_it_answers_401_to_a_malformed_authorization_header(client, header):
    resp = await client.get("/v1/info", headers={"Authorization": header})
    assert resp.status == 401
    assert "WWW-Authenticate" in resp.headers


async def test_it_answers_403_to_a_token_that_is_a_prefix_or_has_odd_bytes(client):
    for token in [TOKEN[:-1], TOKEN + "x", "é" * 30]:
        resp = await client.get("/v1/info", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 403, token


async def test_it_accepts_the_right_token_with_any_scheme_case(client):
    resp = await client.get("/v1/info", headers={"Authorization": f"bearer {TOKEN}"})
    assert resp.status == 200


async def test_it_refuses_an_anonymous_oversized_body_as_401_not_413(client):
    resp = await client.post("/v1/containers", data=b"x" * 100_000)
    assert resp.status == 401


# --- info and listing ----------------------------------------------------------------


async def test_info_reports_host_capacity_and_the_api_version(client):
    await created(client)
    resp = await client.get("/v1/info", headers=AUTH)
    assert resp.status == 200
    info = await resp.json()
    assert info["api_version"] == "v1"
    assert (info["cpus"], info["memory_bytes"], info["disk_bytes"]) == (2, 1 << 30, 1 << 34)
    assert info["containers"] == 1
    assert info["containers_by_state"] == {"running": 1}


async def test_it_lists_containers_as_json(client):
    await created(client)
    resp = await client.get("/v1/containers", headers=AUTH)
    body = await resp.json()
    assert [c["name"] for c in body["containers"]] == ["web-1"]
    assert body["containers"][0]["state"] == "running"


# --- create: validation and idempotency -----------------------------------------------


async def test_create_answers_201_then_200_for_a_retry_without_a_duplicate(client, manager):
    first = await client.post("/v1/containers", json=CREATE, headers=AUTH)
    again = await client.post("/v1/containers", json=CREATE, headers=AUTH)
    assert (first.status, again.status) == (201, 200)
    assert first.headers["Location"] == "/v1/containers/web-1"
    assert (await first.json()) == (await again.json())
    assert list(manager.containers) == ["web-1"]


async def test_of_two_racing_identical_creates_exactly_one_is_told_201(tmp_path, manager, images):
    # The first create stays inside the manager until both requests have
    # reached the server: the second arrives while the first is not done.
    arrived: list[str] = []
    manager.create_gate = both_arrived = asyncio.Event()

    @web.middleware
    async def count_arrivals(request: web.Request, handler: Any) -> web.StreamResponse:
        arrived.append(request.path)
        if len(arrived) == 2:
            both_arrived.set()
        return await handler(request)

    app = create_app(manager, images, config(tmp_path))
    app.middlewares.insert(0, count_arrivals)
    server = ApiServer(app, "127.0.0.1", 0, drain_timeout_s=1.0, tls=server_tls().context)
    await server.start()
    try:
        async with aiohttp.ClientSession(
            base_url=f"https://127.0.0.1:{server.port}", connector=server_tls().connector()
        ) as c:
            first, second = await asyncio.gather(
                c.post("/v1/containers", json=CREATE, headers=AUTH),
                c.post("/v1/containers", json=CREATE, headers=AUTH),
            )
    finally:
        await server.stop()
    assert sorted([first.status, second.status]) == [200, 201]


async def test_create_with_the_same_name_and_another_spec_is_a_409(client):
    await created(client)
    resp = await client.post(
        "/v1/containers", json={**CREATE, "image": "127.0.0.1:5000/other:v2"}, headers=AUTH
    )
    assert resp.status == 409
    assert (await resp.json())["error"] == "conflict"


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (b'{"name": "web-1", "image": ', "", "not valid JSON"),
        (b"", "", "body is required"),
        (b"[1, 2]", "", "JSON object"),
        (b'{"image": "r/a:1"}', "name", "name is required"),
        (b'{"name": "Web 1", "image": "r/a:1"}', "name", "lowercase"),
        (b'{"name": "web\\n", "image": "r/a:1"}', "name", "lowercase"),
        (b'{"name": "w", "image": "r/a:1", "env": {"A\\n": "1"}}', "env", "valid name"),
        (
            b'{"name": "w", "image": "r/a:1", "ports": [{"container_port": 80}]}',
            "ports[0].host_port",
            "ports[0].host_port",
        ),
        (b'{"name": "w", "image": "r/a:1", "env": {"A": 1}}', "env", "env"),
        (b'{"name": "w", "image": "r/a:1", "restart": "sometimes"}', "restart.name", "restart"),
        (
            b'{"name": "w", "image": "r/a:1", "limits": {"memory_bytes": 10}}',
            "limits.memory_bytes",
            "4 MiB",
        ),
        (b"\xff\xfe{}", "", "UTF-8"),
    ],
)
async def test_create_answers_400_naming_the_bad_field(client, manager, body, field, says):
    resp = await client.post(
        "/v1/containers", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    error = await resp.json()
    assert error["error"] == "invalid_request"
    assert error["field"] == field
    assert says in error["message"]
    assert error["permanent"] is True
    assert manager.containers == {}


async def test_it_refuses_a_body_over_the_size_cap_with_413(client, manager):
    big = {**CREATE, "labels": {"pad": "x" * 10_000}}
    resp = await client.post("/v1/containers", json=big, headers=AUTH)
    assert resp.status == 413
    assert (await resp.json())["error"] == "body_too_large"
    assert manager.containers == {}


async def test_it_refuses_a_chunked_body_over_the_size_cap(client, manager):
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "web-1", "image": "r/a:1", "labels": {"pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    resp = await client.post("/v1/containers", data=chunks(), headers=AUTH)
    assert resp.status == 413
    assert manager.containers == {}


# --- 404s ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("POST", "/start"),
        ("POST", "/stop"),
        ("POST", "/restart"),
        ("POST", "/kill"),
        ("GET", "/stats"),
        ("GET", "/logs"),
        ("POST", "/exec"),
    ],
)
async def test_an_unknown_container_is_a_404(client, method, suffix):
    body = {"cmd": ["true"]} if suffix == "/exec" else None
    resp = await client.request(method, f"/v1/containers/nobody{suffix}", json=body, headers=AUTH)
    assert resp.status == 404
    error = await resp.json()
    assert error["error"] == "not_found"
    assert "nobody" in error["message"]


@pytest.mark.parametrize("quoted", ["..%2Fetc", "web%0A", "UPPER"])
async def test_a_name_that_cannot_exist_is_a_404_without_reaching_the_manager(
    client, manager, quoted
):
    def must_not_be_called(name: str) -> None:
        raise AssertionError(f"the manager was asked about {name!r}")

    manager.inspect = must_not_be_called
    resp = await client.get(f"/v1/containers/{quoted}", headers=AUTH)
    assert resp.status == 404
    assert "no container named" in (await resp.json())["message"]


async def test_an_unknown_route_is_a_json_404_and_a_wrong_method_a_405(client):
    resp = await client.get("/v1/nothing", headers=AUTH)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    resp = await client.put("/v1/containers", headers=AUTH)
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]


# --- lifecycle -------------------------------------------------------------------------------


async def test_stop_takes_the_grace_period_from_the_query_the_body_or_the_config(client, manager):
    await created(client)
    url = "/v1/containers/web-1/stop"
    assert (await client.post(url + "?timeout_s=2", headers=AUTH)).status == 200
    assert (await client.post(url, json={"timeout_s": 0.5}, headers=AUTH)).status == 200
    resp = await client.post(url, headers=AUTH)
    assert (await resp.json())["state"] == "exited"
    assert [c[2] for c in manager.calls if c[0] == "stop"] == [2.0, 0.5, 7.0]


@pytest.mark.parametrize("value", ["soon", "-1", "99999", "true"])
async def test_stop_refuses_a_bad_timeout(client, manager, value):
    await created(client)
    resp = await client.post(f"/v1/containers/web-1/stop?timeout_s={value}", headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["field"] == "timeout_s"


async def test_a_lifecycle_body_that_is_not_json_is_a_400(client):
    await created(client)
    resp = await client.post("/v1/containers/web-1/restart", data=b"{oops", headers=AUTH)
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["message"]


@pytest.mark.parametrize(
    ("given", "number"),
    [
        ({}, 9),
        ({"signal": "TERM"}, 15),
        ({"signal": "SIGHUP"}, 1),
        ({"signal": 10}, 10),
        ({"signal": "2"}, 2),
    ],
)
async def test_kill_sends_the_named_or_numbered_signal(client, manager, given, number):
    await created(client)
    resp = await client.post("/v1/containers/web-1/kill", json=given, headers=AUTH)
    assert resp.status == 200
    assert manager.calls[-1] == ("kill", "web-1", number)


@pytest.mark.parametrize("value", ["SIGNOPE", "999", "true"])
async def test_kill_refuses_an_unknown_signal(client, value):
    await created(client)
    resp = await client.post(f"/v1/containers/web-1/kill?signal={value}", headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["field"] == "signal"


async def test_start_and_restart_answer_the_fresh_state(client):
    await created(client, {**CREATE, "start": False})
    resp = await client.post("/v1/containers/web-1/start", headers=AUTH)
    assert (await resp.json())["state"] == "running"
    resp = await client.post("/v1/containers/web-1/restart", headers=AUTH)
    assert (await resp.json())["restart_count"] == 1


async def test_remove_is_idempotent_and_a_running_container_needs_force(client, manager):
    await created(client)
    url = "/v1/containers/web-1"
    resp = await client.delete(url, headers=AUTH)
    assert resp.status == 409
    resp = await client.delete(url + "?force=1", headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"name": "web-1", "removed": True})
    resp = await client.delete(url + "?force=1", headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"name": "web-1", "removed": False})
    assert [c for c in manager.calls if c[0] == "remove"] == [
        ("remove", "web-1", False),
        ("remove", "web-1", True),
    ]


async def test_stats_are_json(client):
    await created(client)
    resp = await client.get("/v1/containers/web-1/stats", headers=AUTH)
    assert await resp.json() == {
        "name": "web-1",
        "cpu_usage_ns": 5,
        "memory_bytes": 1024,
        "memory_limit_bytes": None,
        "pids": 1,
    }


async def test_all_stats_answer_every_container_in_one_request(client, manager):
    resp = await client.get("/v1/stats", headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"containers": []})
    await created(client)
    resp = await client.get("/v1/stats", headers=AUTH)
    one = {"cpu_usage_ns": 5, "memory_bytes": 1024, "memory_limit_bytes": None, "pids": 1}
    assert await resp.json() == {"containers": [{"name": "web-1", **one}]}


async def test_all_stats_skip_a_container_removed_meanwhile(client, manager):
    await created(client)

    def gone(name: str) -> None:
        raise NotFound(f"no container {name}", name=name)

    manager.stats = gone
    resp = await client.get("/v1/stats", headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"containers": []})


async def test_an_unexpected_exception_is_a_short_500_and_is_logged(client, manager, caplog):
    await created(client)

    def broken(name: str) -> None:
        raise ZeroDivisionError("secret detail")

    manager.stats = broken
    resp = await client.get("/v1/containers/web-1/stats", headers=AUTH)
    assert resp.status == 500
    body = await resp.json()
    assert body["error"] == "internal_error"
    assert "secret detail" not in body["message"]
    assert "ZeroDivisionError: secret detail" in caplog.text


# --- streams ---------------------------------------------------------------------------------


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


async def test_exec_streams_output_lines_then_the_exit_code(client, manager):
    await created(client)
    resp = await client.post(
        "/v1/containers/web-1/exec", json={"cmd": ["sh", "-c", "echo hello"]}, headers=AUTH
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    assert ndjson(await resp.text()) == [
        {"stream": "stdout", "data": "hello\n"},
        {"stream": "stderr", "data": "oops\n"},
        {"exit_code": 3},
    ]


async def test_exec_in_a_stopped_container_is_a_409_not_a_stream(client):
    await created(client, {**CREATE, "start": False})
    resp = await client.post("/v1/containers/web-1/exec", json={"cmd": ["true"]}, headers=AUTH)
    assert resp.status == 409


@pytest.mark.parametrize(
    ("body", "field"), [({}, "cmd"), ({"cmd": []}, "cmd"), ({"cmd": "ls"}, "cmd")]
)
async def test_exec_refuses_a_bad_command(client, body, field):
    await created(client)
    resp = await client.post("/v1/containers/web-1/exec", json=body, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["field"] == field


def log_line(second: int, text: str) -> wire.LogLine:
    moment = datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC).isoformat()
    return wire.LogLine(time=moment, stream="stdout", line=text)


async def test_logs_pass_tail_and_since_and_answer_ndjson(client, manager):
    await created(client)
    manager.log_lines = [log_line(1, "one"), log_line(2, "two"), log_line(3, "three")]
    resp = await client.get("/v1/containers/web-1/logs?tail=2", headers=AUTH)
    assert [x["line"] for x in ndjson(await resp.text())] == ["two", "three"]
    resp = await client.get("/v1/containers/web-1/logs?since=2026-01-01T00:00:02Z", headers=AUTH)
    assert [x["line"] for x in ndjson(await resp.text())] == ["two", "three"]
    since = manager.calls[-1][3]
    assert since == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tail=-1", "tail"),
        ("tail=lots", "tail"),
        ("since=yesterday", "since"),
        ("follow=maybe", "follow"),
    ],
)
async def test_logs_refuse_bad_parameters(client, query, field):
    await created(client)
    resp = await client.get(f"/v1/containers/web-1/logs?{query}", headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["field"] == field


async def test_a_follow_stream_sends_lines_as_they_come_and_ends_when_the_client_leaves(
    client, manager
):
    await created(client)
    manager.log_lines = [log_line(1, "first")]
    manager.follow_forever = True
    resp = await client.get("/v1/containers/web-1/logs?follow=1", headers=AUTH)
    assert resp.status == 200
    first = await asyncio.wait_for(resp.content.readline(), 5)
    assert json.loads(first)["line"] == "first"
    resp.close()  # the client goes away mid-stream
    await asyncio.wait_for(manager.follow_closed.wait(), 5)


async def test_a_burst_of_lines_streams_complete_and_in_order(client, manager):
    # More than one chunk's worth (LOG_CHUNK_LINES), as a chatty container makes.
    await created(client)
    manager.log_lines = [log_line(i % 60, f"line {i}") for i in range(12_000)]
    resp = await client.get("/v1/containers/web-1/logs?tail=all", headers=AUTH)
    assert [x["line"] for x in ndjson(await resp.text())] == [f"line {i}" for i in range(12_000)]


# --- images ----------------------------------------------------------------------------------


async def test_pull_answers_the_digest_and_refuses_a_missing_ref(client):
    resp = await client.post("/v1/images/pull", json={"ref": "127.0.0.1:5000/a:1"}, headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["digest"] == "sha256:" + "b" * 64
    resp = await client.post("/v1/images/pull", json={}, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["field"] == "ref"
    resp = await client.post("/v1/images/pull", json={"ref": "r/missing:1"}, headers=AUTH)
    assert resp.status == 404


async def test_gc_keeps_the_images_of_existing_containers(client, images):
    await created(client)
    resp = await client.post("/v1/images/gc", headers=AUTH)
    assert (await resp.json())["removed"] == ["sha256:old"]
    assert images.gc_calls == [{"sha256:" + "a" * 64}]


# --- draining --------------------------------------------------------------------------------


async def test_a_drain_finishes_requests_in_flight_and_refuses_new_connections(tmp_path, manager):
    manager.stop_gate = asyncio.Event()
    server = ApiServer(
        create_app(manager, None, config(tmp_path)), "127.0.0.1", 0, 5.0, tls=server_tls().context
    )
    await server.start()
    base = f"https://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(headers=AUTH, connector=server_tls().connector()) as session:
        await session.post(base + "/v1/containers", json=CREATE)
        in_flight = asyncio.ensure_future(session.post(base + "/v1/containers/web-1/stop"))
        await asyncio.wait_for(manager.stop_entered.wait(), 5)  # the stop is in the manager
        stopping = asyncio.ensure_future(server.stop())
        # The drain closes the listening socket first; the stop is still in flight.
        await async_wait_until(lambda: not port_open("127.0.0.1", server.port))
        assert not in_flight.done()
        manager.stop_gate.set()
        resp = await asyncio.wait_for(in_flight, 5)
        assert resp.status == 200
        assert (await resp.json())["state"] == "exited"
        await asyncio.wait_for(stopping, 5)
    async with aiohttp.ClientSession(headers=AUTH, connector=server_tls().connector()) as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(base + "/v1/info")


async def test_a_drain_ends_open_follow_streams_promptly(tmp_path, manager):
    manager.follow_forever = True
    server = ApiServer(
        create_app(manager, None, config(tmp_path)), "127.0.0.1", 0, 30.0, tls=server_tls().context
    )
    await server.start()
    base = f"https://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(headers=AUTH, connector=server_tls().connector()) as session:
        await session.post(base + "/v1/containers", json=CREATE)
        resp = await session.get(base + "/v1/containers/web-1/logs?follow=1")
        assert resp.status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(server.stop(), 10)
        assert loop.time() - started < 5  # not the 30 s deadline
        assert manager.follow_closed.is_set()


# --- registry_auth: the credential of one pull, beside the request -------------------


async def test_a_create_hands_its_registry_auth_to_the_manager_but_not_into_the_request(
    client, manager
):
    auth = {"registry": "127.0.0.1:5000", "token": "a.b.c"}
    await created(client, {**CREATE, "registry_auth": auth})
    # A retry with a fresh token is the same request: 200, the same container.
    retry = await client.post(
        "/v1/containers",
        json={**CREATE, "registry_auth": {**auth, "token": "d.e.f"}},
        headers=AUTH,
    )
    assert retry.status == 200, await retry.text()
    assert manager.auths == [
        wire.RegistryAuth("127.0.0.1:5000", token="a.b.c"),
        wire.RegistryAuth("127.0.0.1:5000", token="d.e.f"),
    ]
    assert "token" not in repr(manager.requests["web-1"])


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ("token", "registry_auth"),
        ({"token": "a.b.c"}, "registry_auth.registry"),
        ({"registry": "bad host", "token": "x"}, "registry_auth.registry"),
        ({"registry": "r.example"}, "registry_auth"),
        ({"registry": "r.example", "username": "u"}, "registry_auth"),
        (
            {"registry": "r.example", "token": "t", "username": "u", "password": "p"},
            "registry_auth",
        ),
        ({"registry": "r.example", "token": "a\nb"}, "registry_auth.token"),
    ],
)
async def test_a_bad_registry_auth_is_a_400_naming_it(client, manager, auth, field):
    resp = await client.post("/v1/containers", json={**CREATE, "registry_auth": auth}, headers=AUTH)
    assert resp.status == 400
    body = await resp.json()
    assert body.get("field") == field, body
    assert manager.calls == []
    assert '"p"' not in await resp.text()


def test_a_registry_auth_repr_shows_no_secret():
    auth = wire.RegistryAuth("r.example", username="bob", password="hunter2")
    assert "hunter2" not in repr(auth) and "hunter2" not in str(auth)
