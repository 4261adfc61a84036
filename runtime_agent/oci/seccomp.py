"""The seccomp profile every container runs under.

Why a deny list on an allow-by-default filter, when Docker ships an allow
list (default ERRNO, ~350 syscalls named)?  Seccomp is our *second* wall:
the first is the capability set (spec.DEFAULT_CAPABILITIES has no
CAP_SYS_ADMIN, SYS_MODULE, SYS_PTRACE, SYS_BOOT, SYS_TIME...), which already
makes most of the calls below fail.  The filter exists for the calls that a
process without those capabilities can still make and that have a history of
kernel escapes (user namespaces through unshare/clone, bpf, userfaultfd,
keyctl, perf_event_open, io_uring), and to keep a future capability slip from
reopening mount/ptrace/kexec.  A short list that a reviewer can read in one
screen, which does not break an application the day it uses a new harmless
syscall, is worth more to us than the completeness of an allow list we could
not keep current.  The price: a *new* dangerous syscall is allowed until it
is added here; the capability set still guards it.

``clone3`` is special: its flags live in a struct that seccomp cannot
inspect, so we cannot refuse only CLONE_NEWUSER as we do for ``clone``.
Docker answers ENOSYS (not EPERM) so that glibc falls back to ``clone``,
where the flag check below applies; we do the same.
"""

from __future__ import annotations

import errno
import platform
from typing import Any

# Calls refused with EPERM, as if the caller lacked the privilege.
DENIED_SYSCALLS: tuple[str, ...] = (
    # filesystems and namespaces: the classic ways out of a container
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "open_by_handle_at",  # the "shocker" escape: open host files by handle
    "name_to_handle_at",
    # reading or changing other processes and the kernel
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "lookup_dcookie",
    "syslog",
    "_sysctl",
    "uselib",
    "nfsservctl",
    # the kernel keyring is not namespaced
    "keyctl",
    "add_key",
    "request_key",
    # io_uring bypasses seccomp for the operations it performs and has had a
    # long run of privilege escalations (Docker blocks it too)
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # host-wide state
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "quotactl",
    "quotactl_fd",
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
)

# clone() flags that create namespaces.  CLONE_NEWUSER needs no capability at
# all, so only this filter stops a container from making a user namespace
# (and with it a root that can reach much more of the kernel).
CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

# Every ABI a process on this machine can call the kernel through must be in
# the filter: a syscall made through a missing one (int 0x80 on x86_64, the
# x32 ABI) would not be matched by the rules at all.
_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def architectures(machine: str | None = None) -> list[str]:
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise ValueError(f"no seccomp architecture list for {machine!r}")
    return list(_ARCHES[machine])


def _errno_rule(names: list[str], err: int) -> dict[str, Any]:
    return {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": err}


def _clone_flag_rule(flag: int) -> dict[str, Any]:
    # clone(flags, ...) on x86_64 and arm64: flags is argument 0.  One rule per
    # flag because the arguments of a single rule are ANDed, rules are ORed.
    rule = _errno_rule(["clone"], errno.EPERM)
    rule["args"] = [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]
    return rule


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for a container."""
    rules = [_errno_rule(list(DENIED_SYSCALLS), errno.EPERM)]
    rules.append(_errno_rule(["clone3"], errno.ENOSYS))
    rules.extend(_clone_flag_rule(f) for f in CLONE_NAMESPACE_FLAGS.values())
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(machine),
        "syscalls": rules,
    }
