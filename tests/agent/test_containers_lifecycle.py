"""The container manager against real runc, overlay and network: lifecycle,
exit codes, exec, logs, idempotent create and a remove that leaves nothing."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import pytest
import redis.asyncio

from runtime_agent.containers.exec import ExecRunner
from runtime_agent.containers.logs import REDIS_STREAM_PREFIX, parse_time
from runtime_agent.host.errors import Conflict, NotFound
from runtime_agent.wire import ContainerState as S
from runtime_agent.wire import ExecRequest
from tests.support.agent_harness import (
    AgentUnderTest,
    LocalImages,
    request,
    unique,
    wait_state,
)
from tests.support.processes import async_wait_until
from tests.support.redis_server import run_redis

pytestmark = pytest.mark.root

# PID 1 in a pid namespace ignores signals it has no handler for, so an app
# that wants SIGTERM to end it must trap it, like real init-less apps do.
TRAP_0 = "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done"
TRAP_143 = "trap 'exit 143' TERM; echo ready; while true; do sleep 0.05; done"
DEAF = "echo ready; while true; do sleep 0.05; done"


async def lines(manager, name, **kwargs):
    return [(ln.stream, ln.line) async for ln in manager.logs(name, **kwargs)]


async def logged(manager, name, text, timeout_s=10.0):
    async def check():
        return any(line == text for _, line in await lines(manager, name))

    await async_wait_until(check, timeout_s=timeout_s, what=f"{text!r} in the logs of {name}")


async def test_a_container_runs_and_reports_its_exit_code(manager):
    name = unique()
    info = await manager.create(request(name, ["sh", "-c", "echo hello; exit 3"]))
    assert info.state in (S.RUNNING, S.EXITED)
    assert info.address is not None
    done = await wait_state(manager, name, S.EXITED)
    assert done.exit_code == 3
    assert not done.oom_killed
    assert done.started_at and done.finished_at and done.started_at <= done.finished_at
    await logged(manager, name, "hello")


async def test_stop_lets_an_app_that_handles_sigterm_exit_cleanly(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", TRAP_0]))
    await logged(manager, name, "ready")
    await manager.stop(name, 5.0)
    info = manager.inspect(name)
    # 0, not 137: the app exited on SIGTERM, no SIGKILL after the grace period.
    assert (info.state, info.exit_code, info.pid) == (S.EXITED, 0, None)
    await logged(manager, name, "bye")


async def test_stop_reports_143_for_an_app_that_exits_on_sigterm_by_convention(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", TRAP_143]))
    await logged(manager, name, "ready")
    await manager.stop(name, 5.0)
    assert manager.inspect(name).exit_code == 143


async def test_stop_kills_an_app_that_ignores_sigterm_after_the_grace_period(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", DEAF]))
    await logged(manager, name, "ready")
    started = time.monotonic()
    await manager.stop(name, 0.5)
    assert time.monotonic() - started >= 0.5
    assert manager.inspect(name).exit_code == 137


async def test_kill_9_reports_137(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", DEAF]))
    await logged(manager, name, "ready")
    await manager.kill(name, 9)
    info = await wait_state(manager, name, S.EXITED)
    assert info.exit_code == 137


async def test_start_after_stop_runs_the_container_again(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", TRAP_0]))
    first = manager.inspect(name).pid
    await manager.stop(name, 5.0)
    await manager.start_container(name)
    info = manager.inspect(name)
    assert info.state == S.RUNNING and info.pid not in (None, first)
    await manager.restart(name, 5.0)
    assert manager.inspect(name).pid not in (None, info.pid)


async def test_create_is_idempotent_by_name(manager, agent):
    name = unique()
    req = request(name, ["sh", "-c", DEAF])
    first = await manager.create(req)
    again = await manager.create(req)
    assert again.pid == first.pid
    assert [c.name for c in manager.list()] == [name]
    assert len(agent.images.pulls) == 1


async def test_create_with_a_taken_name_and_another_request_is_a_conflict(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", DEAF]))
    with pytest.raises(Conflict):
        await manager.create(request(name, ["sh", "-c", "exit 0"]))


async def test_create_without_start_leaves_it_created(manager):
    name = unique()
    info = await manager.create(request(name, ["sh", "-c", DEAF], start=False))
    assert (info.state, info.pid) == (S.CREATED, None)
    await manager.start_container(name)
    assert manager.inspect(name).state == S.RUNNING


async def test_a_command_missing_from_the_image_is_dead_with_the_error(manager):
    name = unique()
    with pytest.raises(Exception, match="no-such-binary"):
        await manager.create(request(name, ["/no-such-binary"]))
    info = manager.inspect(name)
    assert info.state == S.DEAD
    assert "no-such-binary" in (info.error or "")


async def test_env_working_dir_and_user_reach_the_process(manager):
    name = unique()
    script = 'echo "$GREETING $(pwd) $(id -u)"'
    req = request(
        name, ["sh", "-c", script], env={"GREETING": "hi"}, working_dir="/tmp", user="app"
    )
    await manager.create(req)
    await wait_state(manager, name, S.EXITED)
    await logged(manager, name, "hi /tmp 1000")


async def test_exec_streams_output_and_the_exit_code(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", DEAF]))
    out = await manager.exec(
        name, ExecRequest(cmd=["sh", "-c", "echo out; echo err >&2; exit 5"], env={"X": "1"})
    )
    items = [item async for item in out]
    assert items[-1] == ("exit", 5)
    assert ("stdout", b"out\n") in items and ("stderr", b"err\n") in items


async def test_exec_past_its_timeout_is_killed(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", DEAF]))
    out = await manager.exec(name, ExecRequest(cmd=["sleep", "30"], timeout_s=0.5))
    items = [item async for item in out]
    # Not 0: the sleep was killed, not waited for.
    assert items[-1][0] == "exit" and items[-1][1] != 0


async def test_exec_in_a_stopped_container_is_a_conflict(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", "exit 0"]))
    await wait_state(manager, name, S.EXITED)
    with pytest.raises(Conflict):
        await manager.exec(name, ExecRequest(cmd=["true"]))


async def test_logs_tag_streams_and_honour_tail_and_since(manager):
    name = unique()
    script = "echo one; echo two >&2; sleep 0.3; echo three; echo four >&2; sleep 100"
    await manager.create(request(name, ["sh", "-c", script]))
    await logged(manager, name, "four")
    everything = [ln async for ln in manager.logs(name)]
    assert [(ln.stream, ln.line) for ln in everything] == [
        ("stdout", "one"),
        ("stderr", "two"),
        ("stdout", "three"),
        ("stderr", "four"),
    ]
    assert await lines(manager, name, tail=1) == [("stderr", "four")]
    since = parse_time(everything[2].time)
    assert await lines(manager, name, since=since) == [("stdout", "three"), ("stderr", "four")]


async def test_logs_follow_streams_new_lines_and_ends_on_remove(manager):
    name = unique()
    script = "echo first; sleep 0.5; echo second >&2; sleep 100"
    await manager.create(request(name, ["sh", "-c", script]))
    got = []

    async def follow():
        async for ln in manager.logs(name, follow=True):
            got.append((ln.stream, ln.line))
            if len(got) == 2:
                await manager.remove(name, force=True)

    await asyncio.wait_for(follow(), 15)
    assert got == [("stdout", "first"), ("stderr", "second")]


async def test_remove_needs_force_for_a_running_container(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", DEAF]))
    with pytest.raises(Conflict):
        await manager.remove(name)
    await manager.remove(name, force=True)
    with pytest.raises(NotFound):
        manager.inspect(name)


def _mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


async def test_remove_leaves_no_mount_netns_veth_runc_state_or_directory(manager, agent):
    name = unique()
    await manager.create(request(name, ["sh", "-c", DEAF]))
    att = agent.network.attachments()[name]
    cdir = agent.config.containers_dir / name
    assert str(cdir / "rootfs") in _mounts()
    assert os.path.exists(att.netns_path)
    assert agent.runc.state(name) is not None
    assert list(Path("/sys/fs/cgroup").glob(f"*{manager.preparer.cgroups_path(name)}"))
    await manager.remove(name, force=True)
    assert str(cdir / "rootfs") not in _mounts()
    assert not os.path.exists(att.netns_path)
    assert name not in agent.network.attachments()
    assert not Path(f"/sys/class/net/{att.host_veth}").exists()
    assert agent.runc.state(name) is None
    assert not cdir.exists()
    cgroup = manager.preparer.cgroups_path(name)
    assert not list(Path("/sys/fs/cgroup").glob(f"*{cgroup}"))


async def test_a_memory_hog_is_oom_killed_and_reported(manager):
    name = unique()
    req = request(
        name,
        ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"],
        limits={"memory_bytes": 32 * 1024 * 1024},
    )
    await manager.create(req)
    info = await wait_state(manager, name, S.EXITED)
    assert info.oom_killed
    assert info.exit_code == 137


async def test_stats_and_host_info_report_usage(manager):
    name = unique()
    req = request(name, ["sh", "-c", DEAF], limits={"memory_bytes": 64 * 1024 * 1024})
    await manager.create(req)
    stats = await manager.stats(name)
    assert stats.memory_bytes > 0 and stats.pids >= 1
    # The cgroup's limit: the memory asked for plus the in-memory writable
    # layer (runtime_agent/containers/isolation.py cgroup_limits).
    writable = manager.config.default_writable_bytes
    assert stats.memory_limit_bytes == 64 * 1024 * 1024 + writable
    host = manager.host_info()
    assert host["cpus"] >= 1 and host["memory_bytes"] > 0 and host["disk_bytes"] > 0
    assert host["containers_running"] == 1
    assert host["memory_reserved_bytes"] == 64 * 1024 * 1024


async def test_a_create_that_fails_half_way_leaves_nothing_behind(manager, agent):
    port = 20000 + secrets.randbelow(20000)
    ports = [{"container_port": 80, "host_port": port}]
    taken = unique()
    await manager.create(request(taken, ["sh", "-c", DEAF], ports=ports))
    name = unique()
    with pytest.raises(Conflict):  # the host port is taken: found after mount and attach
        await manager.create(request(name, ["sh", "-c", DEAF], ports=ports))
    cdir = agent.config.containers_dir / name
    assert not cdir.exists()
    assert str(cdir / "rootfs") not in _mounts()
    assert name not in agent.network.attachments()
    with pytest.raises(NotFound):
        manager.inspect(name)
    # The name is free again for a request that can work.
    await manager.create(request(name, ["sh", "-c", DEAF]))
    assert manager.inspect(name).state == S.RUNNING


async def test_concurrent_creates_and_removes_do_not_trip_over_each_other(manager, agent):
    names = [unique() for _ in range(4)]
    infos = await asyncio.gather(*(manager.create(request(n, ["sh", "-c", DEAF])) for n in names))
    assert all(i.state == S.RUNNING for i in infos)
    assert len({i.address for i in infos}) == 4
    await asyncio.gather(*(manager.remove(n, force=True) for n in names))
    assert manager.list() == []
    assert agent.network.attachments() == {}


async def test_log_lines_reach_the_redis_stream_when_configured(tmp_agent_root, tmp_path):
    with run_redis(tmp_path / "redis") as url:
        a = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"), redis_url=url)
        await a.setup()
        try:
            manager = await a.manager()
            name = unique()
            await manager.create(request(name, ["sh", "-c", "echo to-redis; echo err >&2"]))
            client = redis.asyncio.Redis.from_url(url)
            try:

                async def entries():
                    got = await client.xrange(REDIS_STREAM_PREFIX + name)
                    return got if len(got) == 2 else None

                got = await async_wait_until(entries, timeout_s=10, what="two stream entries")
            finally:
                await client.aclose()
        finally:
            await a.cleanup()
    assert sorted((f[b"stream"], f[b"line"]) for _, f in got) == [
        (b"stderr", b"err"),
        (b"stdout", b"to-redis"),
    ]


async def test_lines_flushed_at_exit_reach_the_redis_stream_before_any_poll(
    tmp_agent_root, tmp_path
):
    # A poll interval longer than the test: only the exit flush and the
    # tailer's close can carry the lines, as when a container exits before
    # its tailer's first poll.
    with run_redis(tmp_path / "redis") as url:
        a = AgentUnderTest(tmp_agent_root, LocalImages(tmp_path / "images"), redis_url=url)
        await a.setup()
        client = redis.asyncio.Redis.from_url(url)
        try:
            manager = await a.manager(log_poll_s=3600)
            name = unique()
            await manager.create(request(name, ["sh", "-c", "echo early; echo bye >&2"]))
            await async_wait_until(
                lambda: manager.inspect(name).state == S.EXITED, timeout_s=10, what="the exit"
            )
            await manager.shutdown()
            got = await client.xrange(REDIS_STREAM_PREFIX + name)
        finally:
            await client.aclose()
            await a.cleanup()
    assert sorted((f[b"stream"], f[b"line"]) for _, f in got) == [
        (b"stderr", b"bye"),
        (b"stdout", b"early"),
    ]


async def test_a_create_whose_caller_goes_away_still_completes(manager):
    name = unique()
    task = asyncio.create_task(manager.create(request(name, ["sh", "-c", DEAF])))
    await asyncio.sleep(0.01)  # mid-way: pulling, mounting or in runc
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    def running():
        try:
            return manager.inspect(name).state == S.RUNNING
        except NotFound:  # not yet: the record appears once the rootfs is ready
            return False

    await async_wait_until(running, timeout_s=10, what="the create to finish")
    assert manager.inspect(name).pid is not None
    await manager.remove(name, force=True)


async def test_a_chatty_container_keeps_its_raw_log_files_small_on_disk(manager, agent):
    name = unique()
    # 2 MiB of 'x' in 100-char lines; the last 52 chars end without a newline.
    script = "dd if=/dev/zero bs=1024 count=2048 2>/dev/null | tr '\\0' x | fold -w 100"
    await manager.create(request(name, ["sh", "-c", script]))
    await wait_state(manager, name, S.EXITED)
    got = [ln.line async for ln in manager.logs(name)]
    assert len(got) == 2 * 1024 * 1024 // 100 + 1
    assert set(got[:-1]) == {"x" * 100} and got[-1] == "x" * 52
    raw = os.stat(agent.config.containers_dir / name / "logs" / "stdout.raw")
    assert raw.st_size == 2 * 1024 * 1024 + len(got) - 1  # sizes and offsets stay as written
    assert raw.st_blocks * 512 <= 128 * 1024  # but the consumed bytes were freed


async def test_an_exec_whose_caller_goes_away_is_stopped_and_leaves_no_pid_file(manager):
    name = unique()
    await manager.create(request(name, ["sh", "-c", DEAF]))
    runner = ExecRunner(manager.runc, manager.store)
    out = runner.start(name, ExecRequest(cmd=["sh", "-c", "echo started; exec sleep 271"]))
    assert await anext(out) == ("stdout", b"started\n")
    # runc writes the pid file after the command has started: output can come
    # first. (A stop before the file exists cannot kill the command: see the
    # report of issue 7; not changed here.)
    cdir = manager.store.container_dir(name)
    await async_wait_until(lambda: list(cdir.glob("exec-*.pid")), what="the exec's pid file")
    await out.aclose()  # the caller goes away while the command runs
    assert list(cdir.glob("exec-*.pid")) == []
    listing = [item async for item in runner.start(name, ExecRequest(cmd=["ps", "-o", "args"]))]
    stdout = b"".join(bytes(chunk) for stream, chunk in listing if stream == "stdout")
    assert b"sleep 271" not in stdout
