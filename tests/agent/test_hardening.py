"""Hardening by default, checked from inside real containers: capabilities,
no_new_privs, masked and read-only /proc, devices, and the seccomp filter.

Where a check could pass for another reason than the protection under test
(mount(2) also needs CAP_SYS_ADMIN), a control container with exactly that
one protection removed shows the check does fail without it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runtime_agent.oci import spec
from tests.support.rootfs import Harness, Started

pytestmark = pytest.mark.root

# Docker's default set (a80425fb) less CAP_NET_RAW (bit 13): see oci/spec.py.
DEFAULT_CAPS = "00000000a80405fb"


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path / "h")
    yield h
    h.cleanup()


def status_of_init(harness: Harness, started: Started) -> dict[str, str]:
    code, out, err = harness.exec(started.cid, ["cat", "/proc/1/status"])
    assert code == 0, err
    return {k: v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def sh(harness: Harness, started: Started, script: str) -> tuple[int, str]:
    code, out, err = harness.exec(started.cid, ["sh", "-c", script])
    return code, out + err


def without_seccomp(config: dict) -> None:
    del config["linux"]["seccomp"]


def with_sys_admin(config: dict) -> None:
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind].append("CAP_SYS_ADMIN")


def test_it_gives_root_dockers_default_capabilities_without_net_raw(harness):
    status = status_of_init(harness, harness.run(["sleep", "100"]))
    assert status["CapEff"] == DEFAULT_CAPS
    assert status["CapPrm"] == DEFAULT_CAPS
    assert status["CapBnd"] == DEFAULT_CAPS
    assert status["CapInh"] == "0000000000000000"
    assert status["CapAmb"] == "0000000000000000"


def test_it_leaves_a_non_root_user_without_effective_capabilities(harness):
    started = harness.run(["sleep", "100"], user="app")
    status = status_of_init(harness, started)
    assert status["Uid"].split()[0] == "1000"
    assert status["CapEff"] == "0000000000000000"
    assert status["CapAmb"] == "0000000000000000"
    assert status["CapBnd"] == DEFAULT_CAPS


def test_it_sets_no_new_privs_and_a_seccomp_filter(harness):
    status = status_of_init(harness, harness.run(["sleep", "100"]))
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode


def test_it_refuses_writes_to_proc_sys(harness):
    started = harness.run(["sleep", "100"])
    code, out = sh(harness, started, "echo '|/tmp/x' > /proc/sys/kernel/core_pattern")
    assert code != 0
    assert "Read-only file system" in out
    code, _ = sh(harness, started, "echo h > /proc/sysrq-trigger")
    assert code != 0
    assert Path("/proc/sys/kernel/core_pattern").read_text() != "|/tmp/x\n"


def test_it_masks_the_proc_and_sys_files_docker_masks(harness):
    started = harness.run(["sleep", "100"])
    checked = 0
    for path in spec.MASKED_PATHS:
        host = Path(path)
        if not host.exists():
            continue  # e.g. this kernel has no /proc/kcore
        if host.is_dir():
            code, out = sh(harness, started, f"ls -A {path}")
            assert (code, out) == (0, ""), path
            host_listing = list(host.iterdir())
            checked += bool(host_listing)
        else:
            code, out = sh(harness, started, f"cat {path}")
            assert (code, out) == (0, ""), path
            checked += bool(host.read_bytes()[:1])
    # At least some of them have something to hide on this host, or the
    # test would prove nothing (here: /proc/keys, /proc/timer_list, /sys/firmware).
    assert checked >= 2


def test_it_denies_mount_even_to_a_container_given_cap_sys_admin(harness):
    script = "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted"
    plain = harness.run(["sleep", "100"])
    code, out = sh(harness, plain, script)
    assert code != 0 and "mounted" not in out

    # The filter is what stops it: with SYS_ADMIN it still fails...
    admin = harness.run(["sleep", "100"], edit=with_sys_admin)
    code, out = sh(harness, admin, script)
    assert code != 0
    assert "permission denied" in out.lower() or "not permitted" in out.lower()

    # ...and works once the filter is removed too (the control).
    def admin_without_seccomp(config):
        with_sys_admin(config)
        without_seccomp(config)

    control = harness.run(["sleep", "100"], edit=admin_without_seccomp)
    assert sh(harness, control, script) == (0, "mounted\n")


def test_it_denies_unshare_of_a_user_namespace(harness):
    started = harness.run(["sleep", "100"])
    code, out = sh(harness, started, "unshare -U true")
    assert code != 0
    assert "Operation not permitted" in out
    # A user namespace needs no capability: only the filter refuses it.
    control = harness.run(["sleep", "100"], edit=without_seccomp)
    assert sh(harness, control, "unshare -U true && echo ok") == (0, "ok\n")


CLONE_PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, long r) {
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    printf("%s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok");
}

int main(void) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    report("clone3-newuser", syscall(SYS_clone3, &args, sizeof args));
    report("clone-newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    report("clone-plain", syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
    return 0;
}
"""


@pytest.fixture
def clone_probe(harness, tmp_path):
    src = tmp_path / "probe.c"
    src.write_text(CLONE_PROBE_C)
    target = harness.rootfs / "bin" / "clone-probe"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(target), str(src)], check=True)
    return "/bin/clone-probe"


def test_it_answers_clone3_with_enosys_and_namespaced_clone_with_eperm(harness, clone_probe):
    started = harness.run([clone_probe])
    harness.wait_status(started.cid, "stopped")
    assert started.output().splitlines() == [
        "clone3-newuser ENOSYS",  # so glibc falls back to clone, where flags are visible
        "clone-newuser EPERM",
        "clone-plain ok",  # fork still works
    ]
    control = harness.run([clone_probe], edit=without_seccomp)
    harness.wait_status(control.cid, "stopped")
    assert control.output().splitlines()[:2] == ["clone3-newuser ok", "clone-newuser ok"]


def test_it_lets_no_device_but_the_standard_ones_be_opened(harness):
    # Any block device of the host will do (the first one: a loop device here).
    first = sorted(Path("/sys/block").iterdir())[0]
    major, minor = (first / "dev").read_text().strip().split(":")
    started = harness.run(["sleep", "100"])
    # CAP_MKNOD is in the default set, so the node can be made, not opened.
    code, out = sh(harness, started, f"mknod /tmp/disk b {major} {minor} && head -c1 /tmp/disk")
    assert code != 0
    assert "Operation not permitted" in out
    assert sh(harness, started, "head -c4 /dev/zero | wc -c && echo x > /dev/null") == (0, "4\n")


def test_it_isolates_processes_and_hostname(harness):
    started = harness.run(["sleep", "100"])
    code, out = sh(harness, started, "hostname; ps -o pid,comm")
    lines = out.split()
    assert code == 0
    assert lines[0] == started.cid
    assert "1" in lines and "sleep" in lines
    assert len([w for w in lines if w.isdigit()]) <= 3  # sleep, sh, ps: nothing of the host


def test_it_mounts_sys_read_only(harness):
    started = harness.run(["sleep", "100"])
    code, out = sh(harness, started, "echo 1 > /sys/kernel/mm/ksm/run")
    assert code != 0 and "Read-only" in out
