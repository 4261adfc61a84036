"""Shared parts of the worker-kill tests (issue 13, fault 1): stop a real
Celery worker at a failpoint (paas/core/failpoints.py), SIGKILL it, bring up
a fresh worker and a real beat with short sweeps, and look for what the dead
worker may have left on the host."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import redis

from paas.applications.models import App, Formation, Release, ReleaseCause, ReleaseState
from paas.applications.services import app_create
from paas.builds.engine.gate import GATE_ROOT
from paas.core.work_slots import BUILD_QUEUE, CONTROL_QUEUE
from paas.hosts import deploy
from runtime_agent.host.cmd import output
from runtime_agent.net import links
from runtime_agent.net.bridge import HostNetwork
from tests.support.agent_harness import AgentProcess
from tests.support.images import BuiltImage, build_busybox_image
from tests.support.registry import TestRegistry
from tests.web.deploy_support import container_names, wait_for

ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20

# Short enough that a test settles in seconds: a dead worker's build lease
# and deploy lock run out soon, and the beat sweeps every second.
FAST_SWEEPS = {
    "PAAS_SWEEP_SECONDS": "1",
    "PAAS_BUILD_LEASE_SECONDS": "5",
    "PAAS_DEPLOY_LOCK_LEASE_S": "2",
    "PAAS_DRAIN_SECONDS": "0.5",
    # Nothing in these tests needs the periodic reconcile; the sweeps must
    # be what settles them.
    "PAAS_RECONCILE_SECONDS": "600",
}


def release_images(registry: TestRegistry, workdir: Path) -> tuple[BuiltImage, BuiltImage]:
    """Two releases' images: busybox httpd answering which one it is."""
    return (
        build_busybox_image(registry, workdir / "one", body="release one\n"),
        build_busybox_image(registry, workdir / "two", body="release two\n"),
    )


def serving_v1(user: Any, name: str, one: BuiltImage) -> App:
    """A new app whose release 1 (image ``one``, a web.1) is deployed, in
    this process: no worker has anything to do with it."""
    app = app_create(user=user, team=user.personal_team, name=name)
    Formation.objects.create(app=app, process_type="web", count=1, memory_bytes=64 * MIB)
    v1 = Release.objects.create(app=app, number=1, image=one.pinned_ref,
                                cause=ReleaseCause.IMAGE, process_types={})  # fmt: skip
    state = deploy.release_deploy(release_id=v1.pk)
    assert state == ReleaseState.CURRENT, state
    return app


def stop_worker_at(workers: Any, point: str, marker_dir: Path) -> subprocess.Popen[bytes]:
    """A worker that blocks at ``point`` when it gets there."""
    workers.env.update({**FAST_SWEEPS, "PAAS_FAILPOINTS": point,
                        "PAAS_FAILPOINT_DIR": str(marker_dir)})  # fmt: skip
    try:
        return workers.start()
    finally:
        # Whatever starts after it (the worker that takes over) runs free.
        del workers.env["PAAS_FAILPOINTS"]


def kill_at(worker: subprocess.Popen[bytes], point: str, marker_dir: Path) -> None:
    """Wait until ``worker`` blocks at ``point``, then SIGKILL it."""
    marker = marker_dir / point
    wait_for(lambda: marker.exists() or worker.poll() is not None, 240, f"the worker at {point}")
    assert worker.poll() is None, f"the worker exited ({worker.returncode}) before {point}"
    assert int(marker.read_text()) == worker.pid  # that worker, no other, is there
    kill(worker)


def kill(worker: subprocess.Popen[bytes]) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()


@contextlib.contextmanager
def beat(env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """A real ``celery beat`` sending the sweeps (stopped by its PID after)."""
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "paas", "beat", "--loglevel", "INFO",
             "--schedule", str(tmp_path / "beat-schedule")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def take_over(workers: Any, tmp_path: Path) -> Iterator[None]:
    """The beat and a fresh worker, as after the dead one's supervisor
    restarted it (the beat first: it needs no wait to be ready). After, with
    every worker stopped, the broker forgets this test's messages."""
    with beat(dict(workers.env), tmp_path):
        workers.start()
        try:
            yield
        finally:
            workers.stop_all()
    forget_messages(workers.env["REDIS_URL"])


def forget_messages(redis_url: str) -> None:
    """Drop the queue and the unacked messages (the dead worker's task, which
    Redis would hand out again after its visibility timeout, half an hour
    on): a later test's worker must not run this test's tasks, whose ids
    name other rows by then. Only while no worker runs."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete("celery", BUILD_QUEUE, CONTROL_QUEUE, "unacked", "unacked_index")
    finally:
        client.close()


# --- what a dead build may leave --------------------------------------------------


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def _in_nft(addresses: list[str]) -> list[str]:
    ruleset = output(["nft", "list", "ruleset"])
    return [a for a in addresses if re.search(rf"(?<![\d.]){re.escape(a)}(?![\d.])", ruleset)]


def build_network(build_env: dict[str, str]) -> HostNetwork:
    return HostNetwork(
        Path(build_env["PAAS_BUILD_DIR"]) / "net",
        build_env["PAAS_BUILD_BRIDGE"],
        IPv4Network(build_env["PAAS_BUILD_SUBNET"]),
        build_env["PAAS_BUILD_NFT_TABLE"],
    )


@dataclass
class Steps:
    """The build steps running at the kill: what their leftovers would be named by."""

    cids: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)


def running_steps(build_env: dict[str, str]) -> Steps:
    build_dir = Path(build_env["PAAS_BUILD_DIR"])
    steps = Steps()
    if (build_dir / "runc").is_dir():
        steps.cids = [c.name for c in (build_dir / "runc").iterdir()]
    if (build_dir / "net").is_dir():
        steps.addresses = [a.address for a in build_network(build_env).attachments().values()]
    return steps


def build_leftovers(build_env: dict[str, str], build_id: str, steps: Steps) -> list[str]:
    """Everything a build left on the host: step containers, mounts (under
    the build dir and the steps' gates), network attachments (netns, veth,
    nft rules of the steps' addresses), directories."""
    build_dir = Path(build_env["PAAS_BUILD_DIR"])
    bridge = build_env["PAAS_BUILD_BRIDGE"]
    found = [f"mount {m}" for m in _mounts_under(str(build_dir))]
    for cid in steps.cids:  # the gates' root is shared by every build on the host
        found += [f"mount {m}" for m in _mounts_under(str(GATE_ROOT / cid))]
        if (GATE_ROOT / cid).exists():
            found.append(f"dir {GATE_ROOT / cid}")
    found += [f"dir {d}" for d in (build_dir / "work").glob("build-*")]
    found += [f"dir {d}" for d in (build_dir / "work").glob(".build-*")]
    if (build_dir / build_id).exists():
        found.append(f"dir {build_dir / build_id}")
    runc_root = build_dir / "runc"
    if runc_root.is_dir():
        found += [f"container {c.name}" for c in runc_root.iterdir()]
    if (build_dir / "net").is_dir():
        network = build_network(build_env)
        found += [f"attachment {cid}" for cid in network.attachments()]
        found += [f"netns {ns}" for ns in links.list_netns() if network.owns_netns(ns)]
        found += [f"veth {v}" for v in links.bridge_ports(bridge)]
    found += [f"nft rule for {a}" for a in _in_nft(steps.addresses)]
    return found


# --- what a dead deploy may leave on the agent -----------------------------------


def agent_leftovers(agent: AgentProcess, expected: set[str], gone: list[str]) -> list[str]:
    """Anything on the agent beyond the ``expected`` containers: other
    containers, their directories, mounts, netns, veths, and nft rules
    naming the addresses of containers that should be ``gone``."""
    found = [f"nft rule for {a}" for a in _in_nft(gone)]
    found += [f"container {n}" for n in container_names(agent) if n not in expected]
    containers = agent.root / "containers"
    found += [f"dir {d.name}" for d in containers.iterdir() if d.name not in expected]
    for point in _mounts_under(str(containers)):
        name = Path(point).relative_to(containers).parts[0]
        if name not in expected:
            found.append(f"mount {point}")
    ours = re.compile(rf"{re.escape(agent.bridge)}-[0-9a-f]{{16}}")
    netns = [n for n in links.list_netns() if ours.fullmatch(n)]
    if len(netns) != len(expected):
        found.append(f"netns {netns} for {sorted(expected)}")
    veths = links.bridge_ports(agent.bridge)
    if len(veths) != len(expected):
        found.append(f"veths {veths} for {sorted(expected)}")
    return found
