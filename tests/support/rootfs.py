"""A busybox root filesystem and a small harness that runs real runc
containers on it, for tests that need a container but not an image or a
registry (hardening, limits, the runc wrapper itself).

The rootfs is a plain directory: /bin/busybox (Debian's static build) and one
symlink per applet, plus /etc/passwd and /etc/group with root, a user "app"
(1000) in group "staff" (50) and nobody.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime_agent.host.errors import HostError
from runtime_agent.oci import spec
from runtime_agent.oci.runc import Runc
from runtime_agent.wire import Limits
from tests.support.processes import wait_until

BUSYBOX = Path("/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
"""


def make_busybox_rootfs(dest: Path) -> Path:
    """Build the rootfs in ``dest`` (created) and return it."""
    bin_dir = dest / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (bin_dir / applet).symlink_to("busybox")
    (dest / "etc").mkdir()
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    for d in ("tmp", "root", "home/app", "proc", "sys", "dev"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    return dest


def new_id(prefix: str = "t") -> str:
    """A container id unique to this run (tests run concurrently)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@dataclass
class Started:
    cid: str
    pid: int
    bundle: Path
    cgroups_path: str
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")


@dataclass
class Harness:
    """Creates containers on one busybox rootfs; :meth:`cleanup` deletes
    every one of them and the runc root."""

    workdir: Path
    runc: Runc = field(init=False)
    rootfs: Path = field(init=False)
    cids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runc = Runc(self.workdir / "runc")
        self.rootfs = make_busybox_rootfs(self.workdir / "rootfs")

    def config(self, cid: str, args: Sequence[str], **overrides: Any) -> dict[str, Any]:
        uid, gid, groups = spec.resolve_user(self.rootfs, overrides.pop("user", None))
        kwargs: dict[str, Any] = {
            "rootfs": self.rootfs,
            "args": list(args),
            "env": {},
            "cwd": "/",
            "uid": uid,
            "gid": gid,
            "additional_gids": groups,
            "hostname": cid,
            "netns_path": None,
            "mounts": [],
            "limits": Limits(),
            "cgroups_path": f"/{cid}",  # top level: runc delete leaves nothing behind
        }
        kwargs.update(overrides)
        return spec.build_spec(**kwargs)

    def prepare(
        self,
        args: Sequence[str],
        *,
        edit: Callable[[dict[str, Any]], None] | None = None,
        **overrides: Any,
    ) -> tuple[str, Path, dict[str, Any]]:
        """A new container id and its bundle dir with config.json; ``edit``
        may change the spec first (to take one protection away in a control)."""
        cid = new_id()
        self.cids.append(cid)
        bundle = self.workdir / "bundles" / cid
        bundle.mkdir(parents=True)
        config = self.config(cid, args, **overrides)
        if edit is not None:
            edit(config)
        (bundle / "config.json").write_text(json.dumps(config))
        return cid, bundle, config

    def create(
        self,
        args: Sequence[str],
        *,
        edit: Callable[[dict[str, Any]], None] | None = None,
        **overrides: Any,
    ) -> Started:
        cid, bundle, config = self.prepare(args, edit=edit, **overrides)
        out, err = bundle / "stdout", bundle / "stderr"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        fd_out, fd_err = os.open(out, flags, 0o600), os.open(err, flags, 0o600)
        try:
            pid = self.runc.create(
                cid, bundle, stdout_fd=fd_out, stderr_fd=fd_err, pid_file=bundle / "pid"
            )
        finally:
            os.close(fd_out)
            os.close(fd_err)
        return Started(cid, pid, bundle, config["linux"]["cgroupsPath"], out, err)

    def run(
        self,
        args: Sequence[str],
        *,
        edit: Callable[[dict[str, Any]], None] | None = None,
        **overrides: Any,
    ) -> Started:
        started = self.create(args, edit=edit, **overrides)
        self.runc.start(started.cid)
        return started

    def exec(self, cid: str, args: Sequence[str], **kwargs: Any) -> tuple[int, str, str]:
        proc = self.runc.exec(cid, args, **kwargs)
        out, err = proc.communicate(timeout=30)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def wait_status(self, cid: str, status: str, timeout_s: float = 10.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            state = self.runc.state(cid)
            return state if state and state["status"] == status else None

        return wait_until(reached, timeout_s=timeout_s, what=f"{cid} {status}")

    def cleanup(self) -> None:
        for cid in self.cids:
            with contextlib.suppress(HostError):
                self.runc.delete(cid, force=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
