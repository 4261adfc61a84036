"""Tenant isolation, probed from inside real containers made by the real
manager (runc, overlay, netns): user namespaces per team, the capability
set, no_new_privs, no raw sockets or forged addresses, the writable-layer
cap and the default limits.

The probe image is the busybox rootfs of tests/support/rootfs.py (as a
one-layer image): the container prints what it sees with busybox applets.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime_agent import wire
from runtime_agent.config import USERNS_MIN_ID
from runtime_agent.containers.manager import ContainerManager
from runtime_agent.host.errors import InvalidRequest
from tests.support.agent_harness import AgentUnderTest, LocalImages, exec_sh, request, unique

pytestmark = pytest.mark.root

ALICE_TEAM = USERNS_MIN_ID + 5 * wire.ID_RANGE_SIZE
BOB_TEAM = USERNS_MIN_ID + 6 * wire.ID_RANGE_SIZE
SLEEPER = ["sleep", "1000"]
MiB = 1024 * 1024
# Docker's default capability set less CAP_NET_RAW (documented in oci/spec.py).
DEFAULT_CAPS = "00000000a80405fb"


@pytest.fixture
async def agent(tmp_agent_root: Path, tmp_path: Path) -> AsyncIterator[AgentUnderTest]:
    a = AgentUnderTest(
        tmp_agent_root,
        LocalImages(tmp_path / "images"),
        default_memory_bytes=96 * MiB,
        default_cpus=0.5,
        default_pids=64,
        default_writable_bytes=8 * MiB,
    )
    try:
        yield await a.setup()
    finally:
        await a.cleanup()


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


async def start(manager: ContainerManager, host_id: int | None = None, **kw: object) -> str:
    name = unique("iso")
    extra = {"id_range": {"host_id": host_id}} if host_id is not None else {}
    await manager.create(request(name, SLEEPER, **extra, **kw))
    return name


async def test_container_root_is_an_unprivileged_host_uid(manager: ContainerManager) -> None:
    name = await start(manager, ALICE_TEAM)
    code, out = await exec_sh(manager, name, "cat /proc/self/uid_map /proc/self/gid_map; id -u")
    assert code == 0, out
    uid_map, gid_map, uid = out.split("\n")[:3]
    assert uid_map.split() == ["0", str(ALICE_TEAM), "65536"]  # not "0 0 4294967295"
    assert gid_map.split() == ["0", str(ALICE_TEAM), "65536"]
    assert uid == "0"  # still root inside
    pid = manager.inspect(name).pid
    assert pid is not None
    assert status(pid)["Uid"].split() == [str(ALICE_TEAM)] * 4


async def test_two_teams_get_disjoint_host_uids(manager: ContainerManager) -> None:
    alice, bob = await start(manager, ALICE_TEAM), await start(manager, BOB_TEAM)
    ranges = []
    for name in (alice, bob):
        code, out = await exec_sh(manager, name, "cat /proc/self/uid_map")
        assert code == 0, out
        _, first, size = (int(x) for x in out.split())
        ranges.append(range(first, first + size))
    assert not set(ranges[0]) & set(ranges[1])
    host_uids = {status(manager.inspect(n).pid or 0)["Uid"].split()[0] for n in (alice, bob)}
    assert host_uids == {str(ALICE_TEAM), str(BOB_TEAM)}


async def test_image_files_stay_root_owned_inside_and_new_files_belong_to_the_range(
    manager: ContainerManager, agent: AgentUnderTest
) -> None:
    name = await start(manager, ALICE_TEAM)
    code, out = await exec_sh(
        manager, name, "stat -c '%u %g' /bin/busybox /etc/passwd; echo x > /made-here; id"
    )
    assert code == 0, out
    assert out.splitlines()[:2] == ["0 0", "0 0"]
    # On the host the new file is owned by the team's range, not by root.
    upper = agent.config.containers_dir / name / "rw" / "upper" / "made-here"
    st = os.lstat(upper)
    assert (st.st_uid, st.st_gid) == (ALICE_TEAM, ALICE_TEAM)
    # The image's layer on disk is untouched (idmapped, not chowned).
    assert os.lstat(agent.images.layer / "bin" / "busybox").st_uid == 0


async def test_a_request_without_a_range_gets_the_agents_default_range(
    manager: ContainerManager, agent: AgentUnderTest
) -> None:
    name = await start(manager)
    code, out = await exec_sh(manager, name, "cat /proc/self/uid_map")
    assert code == 0, out
    assert out.split()[:2] == ["0", str(agent.config.default_id_range)]


@pytest.mark.parametrize("host_id", [0, 65536, USERNS_MIN_ID + 1, 2**32 - 65536])
async def test_it_refuses_an_id_range_that_could_reach_host_users(
    manager: ContainerManager, host_id: int
) -> None:
    name = unique("iso")
    with pytest.raises(InvalidRequest):
        await manager.create(request(name, SLEEPER, id_range={"host_id": host_id}))
    assert name not in manager.records


async def test_capabilities_are_the_documented_set_and_no_new_privs_is_on(
    manager: ContainerManager,
) -> None:
    name = await start(manager, ALICE_TEAM)
    code, out = await exec_sh(manager, name, "cat /proc/1/status")
    assert code == 0, out
    fields = {k: v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    assert fields["CapEff"] == DEFAULT_CAPS
    assert fields["CapBnd"] == DEFAULT_CAPS
    assert fields["CapAmb"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


async def test_raw_sockets_and_forged_addresses_fail(manager: ContainerManager) -> None:
    name = await start(manager, ALICE_TEAM)
    gateway = str(manager.preparer.network.gateway)
    # arping needs a packet socket (CAP_NET_RAW); ip addr needs CAP_NET_ADMIN.
    code, out = await exec_sh(manager, name, f"arping -c 1 -w 1 -I eth0 {gateway}")
    assert code != 0 and "Operation not permitted" in out, out
    code, out = await exec_sh(manager, name, "ip addr add 10.0.0.99/32 dev eth0")
    assert code != 0 and "not permitted" in out, out


async def test_ipv6_is_off_inside(manager: ContainerManager) -> None:
    name = await start(manager, ALICE_TEAM)
    code, out = await exec_sh(
        manager, name, "cat /proc/sys/net/ipv6/conf/all/disable_ipv6; ip -6 addr"
    )
    assert code == 0, out
    assert out.splitlines()[0] == "1"
    assert "inet6" not in out


async def test_writes_past_the_writable_layer_cap_fail_with_enospc(
    manager: ContainerManager,
) -> None:
    name = await start(manager, ALICE_TEAM, limits={"writable_bytes": 2 * MiB})
    code, out = await exec_sh(manager, name, "dd if=/dev/zero of=/big bs=64k count=64")
    assert code != 0
    assert "No space left on device" in out
    code, out = await exec_sh(manager, name, "rm /big && echo small > /small && cat /small")
    assert (code, out.strip()) == (0, "small")  # freed space is writable again


async def test_a_full_writable_layer_gives_enospc_not_an_oom_kill(
    manager: ContainerManager,
) -> None:
    # A layer larger than the app's memory: its pages are charged to the
    # container's memory cgroup, whose limit covers both.
    limits = {"memory_bytes": 16 * MiB, "writable_bytes": 48 * MiB}
    name = await start(manager, ALICE_TEAM, limits=limits)
    code, out = await exec_sh(manager, name, "dd if=/dev/zero of=/big bs=1M count=64")
    assert code != 0 and "No space left on device" in out, out
    code, out = await exec_sh(manager, name, "echo alive")
    assert (code, out.strip()) == (0, "alive")
    assert manager.inspect(name).state == wire.ContainerState.RUNNING


async def test_unset_limits_take_the_agents_defaults(
    manager: ContainerManager, agent: AgentUnderTest
) -> None:
    name = await start(manager, ALICE_TEAM)
    bundle = agent.config.containers_dir / name / "bundle" / "config.json"
    resources = json.loads(bundle.read_text())["linux"]["resources"]
    assert resources["memory"]["limit"] == (96 + 8) * MiB  # memory + the in-memory layer
    assert resources["pids"]["limit"] == 64
    assert resources["cpu"]["quota"] == 50_000
    assert resources["cpu"]["period"] == 100_000
    stats = await manager.stats(name)
    assert stats.memory_limit_bytes == (96 + 8) * MiB
    code, out = await exec_sh(manager, name, "df -k / | tail -1")
    assert code == 0, out
    assert int(out.split()[1]) == 8 * 1024  # the writable layer's size, in KiB


async def test_a_request_overrides_the_defaults(
    manager: ContainerManager, agent: AgentUnderTest
) -> None:
    name = await start(manager, ALICE_TEAM, limits={"memory_bytes": 64 * MiB, "pids": 32})
    bundle = agent.config.containers_dir / name / "bundle" / "config.json"
    resources = json.loads(bundle.read_text())["linux"]["resources"]
    assert (resources["memory"]["limit"], resources["pids"]["limit"]) == ((64 + 8) * MiB, 32)


async def test_removing_a_container_leaves_no_mount_or_namespace_behind(
    manager: ContainerManager, agent: AgentUnderTest
) -> None:
    name = await start(manager, ALICE_TEAM)
    cdir = agent.config.containers_dir / name
    netns = manager.records[name].netns_path
    assert netns is not None
    userns = Path("/var/run/paas-userns") / Path(netns).name
    assert os.path.ismount(cdir / "rootfs") and os.path.ismount(cdir / "rw")
    assert userns.exists()
    await manager.remove(name, force=True)
    assert not cdir.exists()
    assert not os.path.exists(netns) and not userns.exists()


async def test_only_the_containers_dir_of_the_agent_root_is_open_to_ranges(
    manager: ContainerManager, agent: AgentUnderTest
) -> None:
    name = await start(manager, ALICE_TEAM)
    root = agent.config.root
    assert os.stat(root).st_mode & 0o777 == 0o711  # traversable, not listable
    assert os.stat(root / "containers").st_mode & 0o777 == 0o711
    cdir = os.stat(root / "containers" / name)
    assert (cdir.st_mode & 0o777, cdir.st_uid, cdir.st_gid) == (0o710, 0, ALICE_TEAM)
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False) and entry.name != "containers":
            assert os.stat(entry.path).st_mode & 0o077 == 0, entry.name
