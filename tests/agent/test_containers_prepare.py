"""Preparing a container on the host and tearing it down, without the
manager: real image layers (a busybox rootfs), overlay, network namespace,
OCI bundle and runc."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from runtime_agent.containers.prepare import Preparer
from runtime_agent.containers.records import ContainerRecord, Store
from tests.support.agent_harness import AgentUnderTest, request, unique
from tests.support.processes import wait_until

pytestmark = pytest.mark.root


def preparer_of(agent: AgentUnderTest) -> Preparer:
    store = Store(agent.config.containers_dir)
    return Preparer(
        agent.images, agent.network, agent.runc, store, "paas-test-prepare", agent.config
    )


async def test_a_prepared_container_has_its_rootfs_network_and_bundle_and_teardown_removes_all(
    agent: AgentUnderTest,
):
    preparer = preparer_of(agent)
    name = unique()
    rec = ContainerRecord(name=name, request=request(name, ["sh", "-c", "exit 0"]))
    cdir = preparer.store.container_dir(rec.name)
    await preparer.prepare(rec)
    try:
        assert rec.prepared and rec.address and rec.netns_path
        assert os.path.ismount(cdir / "rootfs")
        assert (cdir / "rootfs" / "bin" / "busybox").exists()  # the image's layer, merged
        assert os.path.exists(rec.netns_path)
        assert (cdir / "etc" / "hosts").read_text().count(rec.address) == 1
        spec = json.loads((cdir / "bundle" / "config.json").read_text())
        assert spec["process"]["args"] == ["sh", "-c", "exit 0"]
        assert spec["linux"]["cgroupsPath"] == preparer.cgroups_path(rec.name)
    finally:
        await asyncio.to_thread(preparer.teardown, rec)
    assert not cdir.exists()
    assert not os.path.exists(rec.netns_path)
    assert rec.name not in agent.network.attachments()


async def test_launch_runs_the_bundle_detached_into_the_log_files(agent: AgentUnderTest):
    preparer = preparer_of(agent)
    name = unique()
    rec = ContainerRecord(name=name, request=request(name, ["sh", "-c", "echo launched"]))
    await preparer.prepare(rec)
    try:
        pid = await asyncio.to_thread(preparer.launch, rec)
        assert pid > 0 and (preparer.store.container_dir(name) / "bundle" / "pid").exists()
        out = preparer.store.container_dir(name) / "logs" / "stdout.raw"
        wait_until(lambda: out.read_text() == "launched\n", timeout_s=10, what="the output")
    finally:
        await asyncio.to_thread(preparer.teardown, rec)
    assert agent.runc.state(name) is None
