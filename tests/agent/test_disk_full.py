"""The agent's disk fills up under a running container: the container keeps
running, a new container is refused with "out of disk space" and leaves
nothing half-made, the log tailer says so once (not a traceback per poll)
and loses none of the lines it had read, and all of it works again once
space is freed. The agent root is a small loop-mounted ext4."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime_agent import wire
from runtime_agent.containers.logs import FALLOC_FL_KEEP_SIZE
from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.errors import OutOfSpace
from runtime_agent.host.libc import libc
from tests.support.agent_harness import AgentUnderTest, LocalImages, request, unique, wait_state
from tests.support.loopfs import fill, loop_filesystem
from tests.support.processes import async_wait_until

pytestmark = pytest.mark.root

# Counts in a file of its own writable layer (tmpfs, not the full disk) and
# says each number on stdout (a raw file on the full disk).
COUNTER = "i=0; while true; do i=$((i+1)); echo line $i; echo $i > /count; sleep 0.02; done"


@pytest.fixture
async def on_small_disk(tmp_path: Path) -> AsyncIterator[tuple[Path, AgentUnderTest]]:
    # Short and traversable, as an agent root must be (runc resolves the rootfs
    # as the container's unprivileged host uid).
    base = Path(tempfile.mkdtemp(prefix="pdisk-", dir="/tmp"))
    base.chmod(0o711)
    try:
        with loop_filesystem(base, size_mib=48) as disk:
            disk.chmod(0o711)
            agent = AgentUnderTest(disk / "agent", LocalImages(tmp_path / "images"))
            await agent.setup()
            try:
                yield disk, agent
            finally:
                await agent.cleanup()
    finally:
        base.rmdir()


def _count(agent: AgentUnderTest, name: str) -> int:
    text = (agent.config.containers_dir / name / "rootfs" / "count").read_text().strip()
    return int(text or 0)


def _raw_stdout(agent: AgentUnderTest, name: str) -> Path:
    (path,) = (agent.config.containers_dir / name).rglob("stdout.raw")
    return path


def _reserve(path: Path, length: int) -> None:
    """Allocate ``length`` bytes past the end of ``path`` without growing it."""
    fd = os.open(path, os.O_WRONLY)
    try:
        if libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, os.fstat(fd).st_size, length) != 0:
            raise OSError(ctypes.get_errno(), "fallocate")
    finally:
        os.close(fd)


def _disk_full_said(caplog: pytest.LogCaptureFixture) -> bool:
    return any("out of disk space" in r.getMessage() for r in caplog.records)


def _logged_numbers(agent: AgentUnderTest, name: str) -> list[int]:
    paths = list((agent.config.containers_dir / name).rglob("log.jsonl"))
    if not paths:
        return []  # no line tailed yet
    lines = paths[0].read_text().splitlines()
    return [int(json.loads(line)["line"].split()[1]) for line in lines]


async def test_a_full_agent_disk_refuses_new_containers_and_keeps_the_running_one(
    on_small_disk: tuple[Path, AgentUnderTest], caplog: pytest.LogCaptureFixture
) -> None:
    disk, agent = on_small_disk
    manager: ContainerManager = await agent.manager()
    counter = unique("count")
    await manager.create(request(counter, ["sh", "-c", COUNTER]))
    await wait_state(manager, counter, wire.ContainerState.RUNNING)
    await async_wait_until(lambda: _logged_numbers(agent, counter), what="its first lines")

    caplog.set_level(logging.WARNING, logger="runtime_agent.logs")
    # Room for stdout's raw file (blocks reserved past its end), none for the
    # stored log: the tailer has lines to store while the disk is full. (Woken
    # by each write, it would otherwise have read them all before the disk
    # filled, and the container's own writes would fail from then on.)
    _reserve(_raw_stdout(agent, counter), 1024 * 1024)
    filler = fill(disk)
    at_fill = _count(agent, counter)
    # It keeps counting on a full disk.
    await async_wait_until(lambda: _count(agent, counter) > at_fill + 25, what="more counting")
    await async_wait_until(lambda: _disk_full_said(caplog), what="the tailer's disk-full warning")
    assert manager.inspect(counter).state == wire.ContainerState.RUNNING

    refused = unique("new")
    with pytest.raises(OutOfSpace) as full:
        await manager.create(request(refused, ["sleep", "100"]))
    assert "out of disk space" in full.value.message and refused in full.value.message
    assert [c.name for c in manager.list()] == [counter]
    assert not (agent.config.containers_dir / refused).exists()

    os.unlink(filler)
    at_free = _count(agent, counter)
    await async_wait_until(
        lambda: max(_logged_numbers(agent, counter), default=0) > at_free,
        what="its lines to flow again",
    )
    numbers = _logged_numbers(agent, counter)
    assert numbers == sorted(numbers) and len(numbers) == len(set(numbers))  # no line twice
    waits = [r for r in caplog.records if "out of disk space" in r.getMessage()]
    assert len(waits) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    again = unique("new")
    await manager.create(request(again, ["sleep", "100"]))
    assert (await wait_state(manager, again, wire.ContainerState.RUNNING)).name == again
