"""Cleaning up after builds whose worker died mid-step (SIGKILL, OOM of the
worker, a reboot): their containers, overlay mounts, network attachments
and scratch directories.

A running build holds an exclusive ``flock`` on ``<build dir>/.lock`` for
its whole life; a build dir whose lock can be taken belongs to nobody, so
the reaper may run at any time (worker start, periodic task) without
touching builds in progress on other workers sharing the same work dir."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from paas.builds.engine import gate
from paas.builds.engine.config import BuildConfig
from runtime_agent.host.errors import HostError
from runtime_agent.net.bridge import HostNetwork
from runtime_agent.oci import overlay
from runtime_agent.oci.runc import Runc

log = logging.getLogger("paas.builds.engine")
LOCK_NAME = ".lock"
CID_FILE = "cid"


@contextlib.contextmanager
def new_build_dir(path: Path) -> Iterator[None]:
    """Create the build dir ``path`` already locked (made under a hidden
    name, locked, then renamed: the reaper never sees it unlocked) and hold
    the lock while the build runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hidden = path.with_name(f".{path.name}")
    hidden.mkdir()
    with open(hidden / LOCK_NAME, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # the lock stays with the inode on rename
        os.rename(hidden, path)
        yield


def reap_stale_builds(config: BuildConfig) -> list[str]:
    """Undo what dead builds left; returns the build dirs removed."""
    if not config.work_dir.is_dir():
        return []
    runc = Runc(config.runc_root, binary=config.runc_binary)
    network = None
    if config.network is not None:
        n = config.network
        network = HostNetwork(n.state_dir, n.bridge, n.subnet, n.nft_table)
    reaped = []
    for build_dir in sorted(config.work_dir.glob("build-*")):
        with open(build_dir / LOCK_NAME, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live build
            _reap(build_dir, runc, network)
        shutil.rmtree(build_dir, ignore_errors=True)
        reaped.append(build_dir.name)
        log.warning("reaped the leftovers of a dead build in %s", build_dir)
    return reaped


def _reap(build_dir: Path, runc: Runc, network: HostNetwork | None) -> None:
    for step_dir in sorted(build_dir.glob("step-*")):
        cid_file = step_dir / CID_FILE
        if cid_file.exists():
            cid = cid_file.read_text().strip()
            with contextlib.suppress(HostError):
                runc.delete(cid, force=True)
            gate.close(cid)
            if network is not None:
                with contextlib.suppress(HostError):
                    network.detach(cid)
        rootfs = step_dir / "rootfs"
        if os.path.ismount(rootfs):
            overlay.unmount(rootfs)
