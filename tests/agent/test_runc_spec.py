"""The OCI spec we hand runc, and user resolution against an image's
/etc/passwd (untrusted input). No runc needed: the hardening tests run these
specs for real."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from runtime_agent.host.errors import InvalidRequest
from runtime_agent.oci import seccomp, spec
from runtime_agent.wire import IdRange, Limits
from tests.support.rootfs import GROUP, PASSWD


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


def build(**overrides):
    kwargs: dict[str, Any] = {
        "rootfs": Path("/var/lib/paas-agent/containers/web/rootfs"),
        "args": ["python3", "-m", "http.server"],
        "env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
        "cwd": "/app",
        "uid": 1000,
        "gid": 1000,
        "additional_gids": [50],
        "hostname": "web",
        "netns_path": "/var/run/netns/paas-web",
        "mounts": [spec.Mount("/etc/hosts", Path("/data/web/etc/hosts"), readonly=True)],
        "limits": Limits(memory_bytes=64 << 20, cpu_shares=512, cpu_quota_us=50_000),
        "cgroups_path": "/paas/web",
    }
    kwargs.update(overrides)
    return spec.build_spec(**kwargs)


# --- users -----------------------------------------------------------------------


def test_it_runs_as_root_when_no_user_is_given(rootfs):
    assert spec.resolve_user(rootfs, None) == (0, 0, [])


def test_it_resolves_a_user_by_name_or_uid_with_its_groups(rootfs):
    assert spec.resolve_user(rootfs, "app") == (1000, 1000, [50])
    assert spec.resolve_user(rootfs, "1000") == (1000, 1000, [50])


def test_it_takes_a_group_by_name_or_number(rootfs):
    assert spec.resolve_user(rootfs, "app:staff") == (1000, 50, [])
    assert spec.resolve_user(rootfs, "app:77") == (1000, 77, [50])


def test_it_allows_a_uid_the_image_does_not_know_like_docker(rootfs):
    assert spec.resolve_user(rootfs, "4242") == (4242, 0, [])


def test_it_refuses_an_unknown_user_or_group_name(rootfs):
    with pytest.raises(InvalidRequest, match="ghost"):
        spec.resolve_user(rootfs, "ghost")
    with pytest.raises(InvalidRequest, match="wheel"):
        spec.resolve_user(rootfs, "app:wheel")


def test_it_reads_passwd_through_a_link_inside_the_image(rootfs):
    (rootfs / "usr" / "share").mkdir(parents=True)
    (rootfs / "etc" / "passwd").rename(rootfs / "usr" / "share" / "passwd")
    (rootfs / "etc" / "passwd").symlink_to("/usr/share/passwd")
    assert spec.resolve_user(rootfs, "app")[0] == 1000


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_it_never_follows_a_passwd_link_out_of_the_image(rootfs, tmp_path, how):
    outside = tmp_path / "host-passwd"
    outside.write_text("evil:x:0:0::/:/bin/sh\n")
    target = str(outside) if how == "absolute" else "../../../../../../../" + str(outside)
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to(target)
    with pytest.raises(InvalidRequest):
        spec.resolve_user(rootfs, "evil")


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_it_never_follows_an_etc_link_out_of_the_image(rootfs, tmp_path, how):
    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    (host_etc / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    target = str(host_etc) if how == "absolute" else "../../../../../../../" + str(host_etc)
    shutil.rmtree(rootfs / "etc")
    (rootfs / "etc").symlink_to(target)
    with pytest.raises(InvalidRequest):
        spec.resolve_user(rootfs, "evil")
    assert spec.resolve_user(rootfs, "1000") == (1000, 0, [])


def test_a_passwd_link_loop_reads_as_no_passwd(rootfs):
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to("/etc/passwd")
    assert spec.resolve_user(rootfs, "1000") == (1000, 0, [])


def test_it_does_not_hang_on_a_passwd_fifo(rootfs):
    (rootfs / "etc" / "passwd").unlink()
    os.mkfifo(rootfs / "etc" / "passwd")
    result: list = []
    t = threading.Thread(target=lambda: result.append(spec.resolve_user(rootfs, "1000")))
    t.start()
    t.join(timeout=5)
    assert result == [(1000, 0, [])]


# --- the spec --------------------------------------------------------------------


def test_it_grants_only_dockers_default_capabilities_less_net_raw():
    caps = build()["process"]["capabilities"]
    assert set(caps["bounding"]) == set(spec.DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert caps["inheritable"] == caps["ambient"] == []
    assert len(spec.DEFAULT_CAPABILITIES) == 13
    assert "CAP_NET_RAW" not in str(build())  # no forged packets (net/policy.py)
    assert "CAP_SYS_RESOURCE" not in str(build())
    assert "CAP_SYS_ADMIN" not in str(build())


def test_it_sets_user_command_and_no_new_privileges():
    process = build()["process"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [50]}
    assert process["args"] == ["python3", "-m", "http.server"]
    assert process["cwd"] == "/app"
    assert process["noNewPrivileges"] is True
    assert process["terminal"] is False
    assert process["env"] == ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOSTNAME=web"]


def test_it_adds_a_path_when_the_image_sets_none():
    env = build(env={"A": "1"})["process"]["env"]
    assert env[0].startswith("PATH=/usr/local/sbin:")
    assert "A=1" in env


def test_it_joins_the_prepared_network_namespace_or_makes_one():
    namespaces = build()["linux"]["namespaces"]
    assert {"type": "network", "path": "/var/run/netns/paas-web"} in namespaces
    assert {n["type"] for n in namespaces} == {"pid", "ipc", "uts", "mount", "network"}
    assert {"type": "network"} in build(netns_path=None)["linux"]["namespaces"]


def test_it_limits_memory_without_swap_cpu_and_pids():
    resources = build()["linux"]["resources"]
    assert resources["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    assert resources["cpu"] == {"shares": 512, "quota": 50_000, "period": 100_000}
    assert resources["pids"] == {"limit": 512}
    assert "memory" not in build(limits=Limits())["linux"]["resources"]
    assert build()["linux"]["cgroupsPath"] == "/paas/web"


def test_it_denies_every_device_but_the_standard_ones():
    devices = build()["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    usable = {(d["major"], d.get("minor")) for d in devices[1:] if "r" in d["access"]}
    assert usable == {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, None)}


def test_it_masks_and_write_protects_proc_like_docker():
    linux = build()["linux"]
    assert {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"} <= set(
        linux["maskedPaths"]
    )
    assert {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"} <= set(
        linux["readonlyPaths"]
    )


def test_it_bind_mounts_the_requested_files():
    mounts = {m["destination"]: m for m in build()["mounts"]}
    hosts = mounts["/etc/hosts"]
    assert hosts["source"] == "/data/web/etc/hosts"
    assert {"rbind", "ro", "nosuid", "nodev"} <= set(hosts["options"])
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"} <= set(mounts)
    assert "ro" in mounts["/sys"]["options"]


def test_it_refuses_a_relative_working_dir_or_no_command():
    with pytest.raises(InvalidRequest, match="working dir"):
        build(cwd="app")
    with pytest.raises(InvalidRequest, match="command"):
        build(args=[])


# --- seccomp ---------------------------------------------------------------------


def test_it_denies_the_dangerous_syscalls_with_eperm():
    profile = build()["linux"]["seccomp"]
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    eperm = {
        name
        for rule in profile["syscalls"]
        if rule["errnoRet"] == errno.EPERM and "args" not in rule
        for name in rule["names"]
    }
    wanted = {
        "mount", "umount2", "unshare", "setns", "pivot_root", "ptrace", "kexec_load",
        "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf", "keyctl",
        "add_key", "request_key", "perf_event_open", "userfaultfd", "open_by_handle_at",
        "name_to_handle_at", "reboot", "swapon", "swapoff", "acct", "settimeofday",
        "clock_settime", "iopl", "ioperm", "quotactl", "lookup_dcookie", "fsopen", "fsmount",
        "move_mount", "open_tree",
    }  # fmt: skip
    assert wanted <= eperm


def test_it_answers_clone3_with_enosys_so_glibc_falls_back():
    rules = seccomp.default_profile("x86_64")["syscalls"]
    clone3 = [r for r in rules if "clone3" in r["names"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]


def test_it_filters_every_x86_abi():
    assert seccomp.default_profile("x86_64")["architectures"] == [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
    ]
    with pytest.raises(ValueError):
        seccomp.architectures("sparc")


def test_a_user_namespace_maps_the_range_and_joins_the_given_namespace():
    document = build(id_range=IdRange(host_id=1 << 24), userns_path="/run/u/x")
    linux = document["linux"]
    assert {"type": "user", "path": "/run/u/x"} in linux["namespaces"]
    expected = [{"containerID": 0, "hostID": 1 << 24, "size": 65536}]
    assert linux["uidMappings"] == linux["gidMappings"] == expected


def test_without_a_range_there_is_no_user_namespace():
    linux = build()["linux"]
    assert not [ns for ns in linux["namespaces"] if ns["type"] == "user"]
    assert "uidMappings" not in linux
