"""End to end through the manager: an image pulled from a real registry runs
as a container whose HTTP server answers on its published port (127.0.0.1)
and on its own address; command, env and working dir resolved Docker-style."""

from __future__ import annotations

import urllib.request

import pytest

from runtime_agent import wire
from runtime_agent.containers.prepare import merge_env, resolve_args
from runtime_agent.host.errors import InvalidRequest, RegistryError
from runtime_agent.images.store import ImageStore
from runtime_agent.wire import ContainerState as S
from tests.support.agent_harness import AgentUnderTest, unique, wait_state
from tests.support.images import HTTP_PORT
from tests.support.processes import async_wait_until, free_port


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return None


@pytest.fixture
async def agent(tmp_agent_root, registry):
    images = ImageStore(
        tmp_agent_root, credentials=registry.credentials, ca_file=str(registry.ca_file)
    )
    a = AgentUnderTest(tmp_agent_root, images)
    try:
        yield await a.setup()
    finally:
        await a.cleanup()
        images.close()


@pytest.mark.root
async def test_a_pulled_image_serves_http_on_its_published_port_and_address(agent, busybox_image):
    manager = await agent.manager()
    name, port = unique("web"), free_port()
    req = wire.parse_create(
        {
            "name": name,
            "image": busybox_image.ref,
            "ports": [{"container_port": HTTP_PORT, "host_port": port, "host_ip": "127.0.0.1"}],
        }
    )
    info = await manager.create(req)
    assert info.state == S.RUNNING
    assert info.image_digest == busybox_image.digest
    body = busybox_image.index_body
    assert await async_wait_until(
        lambda: fetch(f"http://127.0.0.1:{port}/") == body, timeout_s=10, what="the port"
    )
    assert fetch(f"http://{info.address}:{HTTP_PORT}/") == body
    await manager.stop(name, 5.0)
    await manager.remove(name)


@pytest.mark.root
async def test_a_second_container_of_the_same_image_reuses_the_layers(agent, busybox_image):
    manager = await agent.manager()
    first, second = unique("a"), unique("b")
    await manager.create(wire.parse_create({"name": first, "image": busybox_image.ref,
                                            "cmd": ["sh", "-c", "echo $PATH; pwd"]}))  # fmt: skip
    layers = sorted(p.name for p in (agent.config.root / "layers").iterdir())
    await manager.create(wire.parse_create({"name": second, "image": busybox_image.ref,
                                            "cmd": ["true"]}))  # fmt: skip
    assert sorted(p.name for p in (agent.config.root / "layers").iterdir()) == layers
    await wait_state(manager, first, S.EXITED)
    lines = [ln.line async for ln in manager.logs(first)]
    assert lines[1] == "/www"  # the image's WorkingDir
    assert "/bin" in lines[0]


@pytest.mark.root
async def test_a_create_asks_the_registry_nothing_for_a_pulled_tag_or_a_stored_digest(
    agent, busybox_image, registry
):
    agent.images.pull(busybox_image.ref)
    # The same store with a wrong password: any registry request would fail.
    offline = ImageStore(
        agent.config.root,
        credentials=lambda host: ("nobody", "wrong"),
        ca_file=str(registry.ca_file),
    )
    agent.images = offline
    try:
        manager = await agent.manager()
        for ref in (busybox_image.ref, busybox_image.pinned_ref):
            info = await manager.create(
                wire.parse_create({"name": unique("off"), "image": ref, "cmd": ["true"]})
            )
            assert info.image_digest == busybox_image.digest
        # The control: a refreshing pull of the same tag does ask, and is refused.
        with pytest.raises(RegistryError):
            offline.pull(busybox_image.ref)
    finally:
        offline.close()


IMAGE = {"config": {"Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["A=1", "B=2"]}}


def req(**kwargs) -> wire.CreateContainer:
    return wire.CreateContainer(name="x", image="r/x:1", **kwargs)


def test_args_are_the_image_entrypoint_and_cmd():
    assert resolve_args(IMAGE, req()) == ["/entry", "serve"]


def test_a_request_cmd_replaces_only_the_image_cmd():
    assert resolve_args(IMAGE, req(cmd=["migrate"])) == ["/entry", "migrate"]


def test_a_request_entrypoint_drops_the_image_cmd():
    assert resolve_args(IMAGE, req(entrypoint=["/bin/sh"])) == ["/bin/sh"]
    assert resolve_args(IMAGE, req(entrypoint=["/bin/sh"], cmd=["-c", "x"])) == [
        "/bin/sh",
        "-c",
        "x",
    ]


def test_no_command_at_all_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest) as caught:
        resolve_args({"config": {}}, req())
    assert caught.value.data["field"] == "cmd"


def test_request_env_overrides_the_image_env_key_by_key():
    assert merge_env(IMAGE, req(env={"B": "3", "C": "4"})) == {"A": "1", "B": "3", "C": "4"}
