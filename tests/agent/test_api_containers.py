"""The API end to end with real containers: the real aiohttp app in front of
the real ContainerManager, runc, overlay, network and image store, pulling
the busybox httpd image from a real registry.

(tests/agent/test_api.py covers the HTTP layer alone against a fake manager;
tests/agent/test_api_process.py runs the agent as a separate process.)
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runtime_agent.api.server import ApiServer, create_app
from runtime_agent.config import AgentConfig
from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.cmd import output
from runtime_agent.images.store import ImageStore
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci.runc import Runc
from tests.support.agent_harness import server_tls, unused_subnet
from tests.support.images import HTTP_PORT, BuiltImage
from tests.support.processes import async_wait_until, free_port
from tests.support.registry import TestRegistry

pytestmark = pytest.mark.root

TOKEN = "alice-token-" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Agent:
    """An in-process agent: real manager, real API on a loopback port."""

    def __init__(self, root: Path, registry: TestRegistry) -> None:
        suffix = secrets.token_hex(3)
        self.config = AgentConfig(
            root=root,
            token=TOKEN,
            bridge=f"pa{suffix}",
            subnet=unused_subnet(),
            nft_table=f"paas_a_{suffix}",
            registry=registry.host,
            registry_user=registry.username,
            registry_password=registry.password,
            registry_ca=registry.ca_file,
            stop_grace_s=2.0,
            backoff_base_s=0.2,
        )
        self.runc = Runc(self.config.runc_root)
        self.network = HostNetwork(
            self.config.net_dir, self.config.bridge, self.config.subnet, self.config.nft_table
        )
        self.images = ImageStore(
            root, credentials=registry.credentials, ca_file=str(registry.ca_file)
        )
        self.manager = ContainerManager(self.config, self.images, self.network, self.runc)
        self.server = ApiServer(
            create_app(self.manager, self.images, self.config), "127.0.0.1", 0, 2.0,
            tls=server_tls().context,
        )  # fmt: skip

    async def start(self) -> None:
        await asyncio.to_thread(self.network.setup)
        await self.manager.start()
        await self.server.start()

    async def close(self) -> None:
        try:
            await self.server.stop()
            for info in self.manager.list():
                await self.manager.remove(info.name, True)
            await self.manager.shutdown()
        finally:
            self.images.close()
            await asyncio.to_thread(self.network.teardown)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"


@pytest.fixture
async def agent(tmp_agent_root: Path, registry: TestRegistry) -> AsyncIterator[Agent]:
    agent = Agent(tmp_agent_root, registry)
    try:
        await agent.start()
        yield agent
    finally:
        await agent.close()
    # Nothing of the agent's is left on the host.
    assert agent.config.bridge not in output(["ip", "-o", "link", "show"])
    assert agent.config.nft_table not in output(["nft", "list", "tables"])
    assert output(["runc", "--root", str(agent.config.runc_root), "list", "-q"]).strip() == ""


@pytest.fixture
async def api(agent: Agent) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=agent.url, headers=AUTH, connector=server_tls().connector()
    ) as session:
        yield session


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def http_get(host: str, port: int, timeout_s: float = 10.0) -> str:
    """GET / until it answers (the server needs a moment after its process starts)."""

    def fetch() -> str | None:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return None

    body: str = await async_wait_until(
        lambda: asyncio.to_thread(fetch), timeout_s=timeout_s, what=f"an answer on {host}:{port}"
    )
    return body


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def create(
    api: aiohttp.ClientSession, body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    resp = await api.post("/v1/containers", json=body)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_a_container_created_through_the_api_answers_on_its_published_port(
    api, busybox_image: BuiltImage
):
    host_port = free_port()
    name = unique("web")
    info = await create(
        api,
        {
            "name": name,
            "image": busybox_image.ref,
            "ports": [{"container_port": HTTP_PORT, "host_port": host_port}],
        },
    )
    assert info["state"] == "running"
    assert info["pid"] > 0
    assert info["image_digest"] == busybox_image.digest
    assert await http_get("127.0.0.1", host_port) == busybox_image.index_body
    assert await http_get(info["address"], HTTP_PORT) == busybox_image.index_body

    resp = await api.get(f"/v1/containers/{name}/stats")
    stats = await resp.json()
    assert stats["memory_bytes"] > 0 and stats["pids"] >= 1

    resp = await api.post(f"/v1/containers/{name}/stop", json={"timeout_s": 2})
    stopped = await resp.json()
    assert stopped["state"] == "exited"
    assert stopped["exit_code"] is not None
    assert port_is_closed(host_port)

    resp = await api.post(f"/v1/containers/{name}/start")
    restarted = await resp.json()
    assert restarted["state"] == "running" and restarted["pid"] != info["pid"]
    assert await http_get("127.0.0.1", host_port) == busybox_image.index_body

    resp = await api.delete(f"/v1/containers/{name}?force=1")
    assert await resp.json() == {"name": name, "removed": True}
    resp = await api.delete(f"/v1/containers/{name}?force=1")
    assert await resp.json() == {"name": name, "removed": False}
    assert (await api.get(f"/v1/containers/{name}")).status == 404
    assert port_is_closed(host_port)


async def test_racing_identical_creates_make_one_container(api, agent, busybox_image):
    name = unique("twice")
    body = {"name": name, "image": busybox_image.ref}
    first, second = await asyncio.gather(
        api.post("/v1/containers", json=body), api.post("/v1/containers", json=body)
    )
    assert sorted([first.status, second.status]) == [200, 201]
    a, b = await first.json(), await second.json()
    assert a["pid"] == b["pid"]
    runc_ids = output(["runc", "--root", str(agent.config.runc_root), "list", "-q"]).split()
    assert runc_ids == [name]
    other = await api.post("/v1/containers", json={**body, "cmd": ["sleep", "1"]})
    assert other.status == 409


async def test_exec_streams_stdout_and_stderr_then_the_exit_code(api, busybox_image):
    name = unique("exec")
    await create(api, {"name": name, "image": busybox_image.ref})
    resp = await api.post(
        f"/v1/containers/{name}/exec",
        json={"cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"]},
    )
    assert resp.status == 200
    items = ndjson(await resp.text())
    assert items[-1] == {"exit_code": 3}
    by_stream: dict[str, str] = {}
    for item in items[:-1]:
        by_stream[item["stream"]] = by_stream.get(item["stream"], "") + item["data"]
    assert by_stream == {"stdout": "out\n", "stderr": "err\n"}


async def test_exec_in_a_stopped_container_is_a_409(api, busybox_image):
    name = unique("idle")
    await create(api, {"name": name, "image": busybox_image.ref, "start": False}, 201)
    resp = await api.post(f"/v1/containers/{name}/exec", json={"cmd": ["true"]})
    assert resp.status == 409


async def test_logs_tail_and_follow_through_the_api(api, busybox_image):
    name = unique("talk")
    script = "echo one; echo two >&2; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
    await create(api, {"name": name, "image": busybox_image.ref, "cmd": ["sh", "-c", script]})

    async def lines(query: str) -> list[dict[str, Any]]:
        resp = await api.get(f"/v1/containers/{name}/logs?{query}")
        assert resp.status == 200
        return ndjson(await resp.text())

    async def four_lines() -> list[dict[str, Any]] | None:
        got = await lines("tail=all")
        return got if len(got) >= 4 else None

    # The tailer picks lines up within its poll interval.
    got = await async_wait_until(four_lines, timeout_s=10, what="four log lines")
    # stdout and stderr are separate files: order holds within a stream only.
    stdout = [x["line"] for x in got if x["stream"] == "stdout"]
    stderr = [x["line"] for x in got if x["stream"] == "stderr"]
    assert stdout[:2] == ["one", "tick 0"]
    assert stderr == ["two"]
    assert all(x["time"].endswith(("Z", "+00:00")) for x in got)
    assert len(await lines("tail=1")) == 1

    resp = await api.get(f"/v1/containers/{name}/logs?follow=1&tail=0")
    assert resp.status == 200
    followed = []
    for _ in range(3):
        raw = await asyncio.wait_for(resp.content.readline(), 10)
        followed.append(json.loads(raw)["line"])
    resp.close()
    numbers = [int(text.split()[1]) for text in followed]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


# Waits in the container (not in the test) until the test says go.
AFTER_GO = "while [ ! -e /tmp/go ]; do sleep 0.05; done; "


async def say_go(api: aiohttp.ClientSession, name: str) -> None:
    resp = await api.post(
        f"/v1/containers/{name}/exec", json={"cmd": ["sh", "-c", "mkdir -p /tmp; touch /tmp/go"]}
    )
    assert ndjson(await resp.text())[-1] == {"exit_code": 0}


async def test_a_follow_stream_is_complete_and_forgotten_when_its_client_leaves(
    api, agent, busybox_image
):
    # The real tailer's follow (batches handed to the stream, no reader task):
    # a stored line, then a container's 5000 (more than a chunk's worth),
    # every line once and in order; the tailer forgets the follower once its
    # client leaves.
    name = unique("follow")
    script = (
        "echo history; "
        + AFTER_GO
        + ('i=0; while [ $i -lt 5000 ]; do echo "line $i"; i=$((i+1)); done; sleep 3600')
    )
    await create(api, {"name": name, "image": busybox_image.ref, "cmd": ["sh", "-c", script]})

    async def stored() -> bool:
        resp = await api.get(f"/v1/containers/{name}/logs?tail=all")
        return [x["line"] for x in ndjson(await resp.text())] == ["history"]

    await async_wait_until(stored, timeout_s=10, what="the first line stored")
    tailer = agent.manager.log_streams._tailers[name]
    resp = await api.get(f"/v1/containers/{name}/logs?follow=1&tail=all")
    assert resp.status == 200
    assert len(tailer._followers) == 1
    await say_go(api, name)
    got: list[str] = []
    while len(got) < 5001:
        got.append(json.loads(await asyncio.wait_for(resp.content.readline(), 10))["line"])
    assert got == ["history"] + [f"line {i}" for i in range(5000)]
    resp.close()  # the client goes away mid-stream
    await async_wait_until(lambda: not tailer._followers, what="the follower forgotten")


async def test_a_follow_stream_sends_the_records_the_agent_stored(api, agent, busybox_image):
    # Each line is encoded once: the stream carries log.jsonl's own bytes
    # (a second json.dumps per line was a fifth of the agent's CPU under a
    # flood), and they are valid NDJSON whatever the line holds.
    name = unique("records")
    texts = ['say "hi"\\ \t', "caf\u00e9 \u2603", "plain"]
    env = {"ONE": texts[0], "TWO": texts[1], "THREE": texts[2]}
    script = AFTER_GO + 'printf "%s\\n" "$ONE" "$TWO" "$THREE"; sleep 3600'
    body = {"name": name, "image": busybox_image.ref, "cmd": ["sh", "-c", script], "env": env}
    await create(api, body)
    resp = await api.get(f"/v1/containers/{name}/logs?follow=1&tail=all")
    assert resp.status == 200
    await say_go(api, name)
    got = [await asyncio.wait_for(resp.content.readline(), 10) for _ in texts]
    resp.close()
    stored = agent.manager.store.container_dir(name) / "logs" / "log.jsonl"
    assert b"".join(got) == stored.read_bytes()
    assert [json.loads(raw)["line"] for raw in got] == texts
    assert [json.loads(raw)["n"] for raw in got] == [1, 2, 3]


async def test_kill_sends_a_signal_and_the_exit_code_says_which(api, busybox_image):
    name = unique("kill")
    await create(api, {"name": name, "image": busybox_image.ref, "cmd": ["sleep", "300"]})
    resp = await api.post(f"/v1/containers/{name}/kill", json={"signal": "KILL"})
    assert resp.status == 200

    async def exited() -> dict[str, Any] | None:
        info = await (await api.get(f"/v1/containers/{name}")).json()
        return info if info["state"] == "exited" else None

    info = await async_wait_until(exited, timeout_s=10, what=f"{name} exited")
    assert (info["state"], info["exit_code"]) == ("exited", 137)


async def test_pull_and_gc_keep_what_a_container_uses(api, agent, busybox_image):
    resp = await api.post("/v1/images/pull", json={"ref": busybox_image.ref})
    assert resp.status == 200
    assert (await resp.json())["digest"] == busybox_image.digest
    await create(api, {"name": unique("keep"), "image": busybox_image.ref})
    resp = await api.post("/v1/images/gc")
    body = await resp.json()
    assert body["removed"] == []
    assert body["in_use"] == [busybox_image.digest]
    for layer in busybox_image.layers:
        assert (agent.config.layers_dir / layer.digest.split(":")[1]).is_dir()


async def test_pulling_an_unknown_image_is_an_error_naming_it(api, busybox_image):
    ref = f"{busybox_image.registry}/test/none-{secrets.token_hex(3)}:v1"
    resp = await api.post("/v1/images/pull", json={"ref": ref})
    assert resp.status == 404
    assert "none-" in (await resp.json())["message"]


async def test_an_exec_whose_client_leaves_is_killed_in_the_container(api, busybox_image):
    name = unique("leave")
    await create(api, {"name": name, "image": busybox_image.ref, "cmd": ["sleep", "300"]})
    resp = await api.post(
        f"/v1/containers/{name}/exec", json={"cmd": ["sh", "-c", "echo started; sleep 271"]}
    )
    first = json.loads(await asyncio.wait_for(resp.content.readline(), 10))
    assert first == {"stream": "stdout", "data": "started\n"}
    resp.close()  # the client goes away while the command still runs

    async def processes() -> str:
        resp = await api.post(f"/v1/containers/{name}/exec", json={"cmd": ["ps", "-o", "args"]})
        return "".join(x.get("data", "") for x in ndjson(await resp.text()))

    async def exec_gone() -> str | None:
        listing = await processes()
        return listing if "sleep 271" not in listing else None

    listing = await async_wait_until(exec_gone, timeout_s=10, what="the exec stopped")
    assert "sleep 300" in listing  # the container itself is untouched
    assert "sleep 271" not in listing
