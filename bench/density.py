"""Benchmark: how many idle apps one host carries (issue 13, "Scale on one host").

Needs root, runc, nftables, docker-registry and nginx (as bench/agent_start.py
and bench/router.py do). From the repository root::

    .venv/bin/python bench/density.py [--instances 200] [--concurrency 8] [--requests 2000]

What it does: starts a real registry (set up like the platform's), pushes the
busybox httpd image of bench/support/harness.py, starts one real agent process
(``python -m runtime_agent``) and the platform's router (nginx from
``router_prepare()``), and pulls the image once. Baseline figures are taken
then (MemAvailable, the agent's RSS/PSS with no container). Then N distinct
"apps" are created through ``POST /v1/containers`` (``--concurrency`` at a
time, one network group each, as the deploy path creates them: a local host's
instances are reached at their container address), each waited for until its
httpd answers, and ``router_apply`` gets one Route per app
(``a<i>.density.localhost`` -> address:8080). Figures:

- ``instances_running``: containers the agent lists as running that answer
  ``GET /`` through the router;
- ``start_all_s``: first create request -> the last app answers at its address;
- ``agent_rss_mib`` / ``agent_pss_mib`` (/proc/<pid>/smaps_rollup), idle before
  and with N containers;
- ``host_mib_per_instance``: (MemAvailable before - after - the containers' own
  cgroup memory, as the agent's /v1/stats counts it) / N: what each instance
  costs the host outside its own processes (kernel objects, netns, veth,
  overlay mount, nft rules, the agent's and nginx's share). MemAvailable is
  the whole machine's: on a shared machine other work moves it too, so this
  figure is only as good as the machine is quiet (``loadavg`` is reported);
  ``platform_pss_kib_per_instance`` is the steadier, partial figure: how much
  the agent's and nginx's PSS grew, per instance (no kernel memory in it);
- ``helper_processes_per_container``: processes descending from the agent
  that are not in a container's cgroup (a shim, a ``runc`` left waiting, a
  log pump...), divided by N; goal 0;
- ``router_p99_ms``: ``--requests`` GETs through nginx (4 keep-alive
  clients on loopback, bench/support/http_load.py), each to a random app;
- ``direct_p99_ms``: the same, straight to the containers' addresses (the
  baseline: what the apps and the machine cost without the router);
- ``agent_list_ms``: the median of 7 ``GET /v1/containers`` (N containers).

Goals: all N running (default N=200 for a 2-core, 24 GB host), zero helper
processes, router p99 < 20 ms, agent list < 100 ms. Everything it made
(containers, mounts, netns, veths, bridge, nft table, processes, files) is
removed at the end, also on failure, Ctrl-C or SIGTERM; ``leftovers`` lists
anything found still there afterwards (bridge, nft table, cgroups, mounts),
and a run with leftovers is not ``ok``. The last line is
{"bench": "density", "figures": {...}, "goals": {...}, "ok": ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import random
import secrets
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `paas`, `runtime_agent`, `bench` importable
    sys.path.insert(0, str(REPO))

from bench.agent_start import http_ok, pct, scratch  # noqa: E402
from bench.support.harness import (  # noqa: E402
    HTTP_PORT,
    AgentDaemon,
    mounts_under,
    pull_auth,
    push_busybox_image,
    registry,
    wait_until,
)
from bench.support.http_load import BrokenResponse, Connection, NoResponse, fetch  # noqa: E402
from runtime_agent.host.cmd import run  # noqa: E402
from runtime_agent.host.tls import PinnedHTTPSConnection  # noqa: E402

GOAL_INSTANCES = 200
GOAL_ROUTER_P99_MS = 20.0
GOAL_LIST_MS = 100.0
DOMAIN = "density.localhost"
READY_TIMEOUT_S = 120.0
MIB = 1024 * 1024


class Agent:
    """The agent's API over one pinned keep-alive connection per thread
    (AgentDaemon.request serialises everything on one connection)."""

    def __init__(self, daemon: AgentDaemon) -> None:
        self.daemon = daemon
        self._local = threading.local()

    def call(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        headers = {"Authorization": f"Bearer {self.daemon.token}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = PinnedHTTPSConnection(
                    "127.0.0.1", self.daemon.port, pin=self.daemon.fingerprint, timeout=timeout
                )
                self._local.conn = conn
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                status, answer = resp.status, json.loads(resp.read() or b"null")
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
                continue
            if status >= 300:
                raise RuntimeError(f"{method} {path}: {status} {answer}")
            return answer
        raise AssertionError("unreachable")


# --- host figures ---------------------------------------------------------------------


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def rss_pss(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB, from smaps_rollup."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) * 1024
    return round(values["Rss"] / MIB, 1), round(values["Pss"] / MIB, 1)


def nginx_pss_mib() -> float:
    """PSS of the router's nginx, master and workers."""
    from bench.router import _nginx_workers
    from paas.router import master
    from paas.router.config import RouterConfig

    pid = master.master_pid(RouterConfig.from_settings())
    pids = ([pid] if pid else []) + _nginx_workers()
    return round(sum(rss_pss(p)[1] for p in pids), 1)


def _memory_cgroup(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return ""


def helper_processes(agent_pid: int) -> tuple[list[str], int]:
    """Descendants of the agent still in the agent's own memory cgroup: every
    process a container needs outside itself (none, if runc was left alone);
    and how many descendants there are in all (the containers' processes are
    among them: the agent is their subreaper, so the walk does see them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    own = _memory_cgroup(agent_pid)
    helpers, todo, seen = [], list(children.get(agent_pid, [])), 0
    while todo:
        pid = todo.pop()
        seen += 1
        todo.extend(children.get(pid, []))
        with contextlib.suppress(OSError):
            if _memory_cgroup(pid) == own:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                helpers.append(f"{pid} {cmd.decode(errors='replace')[:80]}")
    return helpers, seen


def leftovers(daemon: AgentDaemon) -> list[str]:
    """What the cleanup missed: the bridge, the nft table, container cgroups
    (named after the agent's root), mounts under the root."""
    found = []
    if Path(f"/sys/class/net/{daemon.bridge}").exists():
        found.append(f"bridge {daemon.bridge}")
    tables = run(["nft", "list", "tables"], check=False).stdout.decode()
    if daemon.nft_table in tables.split():
        found.append(f"nft table {daemon.nft_table}")
    prefix = "paas-" + hashlib.sha256(str(daemon.root).encode()).hexdigest()[:8] + "-"
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        with contextlib.suppress(OSError):
            found += [f"cgroup {p}" for p in hierarchy.iterdir() if p.name.startswith(prefix)]
    found += [f"mount {m}" for m in mounts_under(daemon.root)]
    return found


# --- the run --------------------------------------------------------------------------


def start_apps(agent: Agent, image_ref: str, tag: str, n: int, concurrency: int) -> dict[str, str]:
    """Create and start N apps; returns name -> container address once each
    answers GET / at its address."""

    def one(i: int) -> tuple[str, str]:
        name = f"d{tag}-{i}"
        body = {"name": name, "image": image_ref, "network_group": name}
        info = agent.call("POST", "/v1/containers", body)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (info["state"] == "running" and info["pid"] and info["address"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {info}")
            time.sleep(0.05)
            info = agent.call("GET", f"/v1/containers/{name}")
        wait_until(lambda: http_ok(info["address"], HTTP_PORT), READY_TIMEOUT_S, f"{name} httpd")
        return name, info["address"]

    pool = ThreadPoolExecutor(concurrency)
    try:
        return dict(pool.map(one, range(n)))
    finally:
        # On Ctrl-C or a failed start, creates not yet begun are dropped (the
        # cleanup then removes what did start) rather than all run first.
        pool.shutdown(wait=True, cancel_futures=True)


def remove_all(agent: Agent, concurrency: int) -> None:
    names = [c["name"] for c in agent.call("GET", "/v1/containers")["containers"]]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda n: agent.call("DELETE", f"/v1/containers/{n}?force=1"), names))


def route_all(apps: dict[str, str]) -> dict[str, str]:
    """One Route per app; returns hostname -> app."""
    from paas.router.routes import Route, Upstream
    from paas.router.services import router_apply

    hosts = {f"{name}.{DOMAIN}": name for name in apps}
    router_apply(
        routes=[
            Route(name, (host,), (Upstream(apps[name], HTTP_PORT),)) for host, name in hosts.items()
        ]
    )
    return hosts


def latency(
    prefix: str, targets: list[tuple[str, int, str]], requests: int, keep_alive: bool
) -> dict[str, Any]:
    """``requests`` GETs, each to a random (address, port, Host) of
    ``targets``, from 4 clients; one kept connection each when ``keep_alive``
    (all targets share the address: the router), else one per request."""
    latencies: list[float] = []
    failed: list[str] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        rng, mine, bad = random.Random(), [], []
        kept = Connection(targets[0][0], targets[0][1]) if keep_alive else None
        try:
            for _ in range(count):
                address, port, host = rng.choice(targets)
                conn = kept or Connection(address, port)
                started = time.perf_counter()
                try:
                    response, _ = fetch(conn, "GET", "/", {"Host": host, "Accept": "*/*"})
                except (OSError, NoResponse, BrokenResponse) as exc:
                    bad.append(repr(exc))
                    continue
                finally:
                    if kept is None:
                        conn.close()
                mine.append(time.perf_counter() - started)
                if response.status != 200:
                    bad.append(f"{host}: {response.status}")
        finally:
            if kept is not None:
                kept.close()
        with lock:
            latencies.extend(mine)
            failed.extend(bad)

    threads = [threading.Thread(target=client, args=(requests // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        f"{prefix}_requests": len(latencies) + len(failed),
        f"{prefix}_failed": len(failed),
        f"{prefix}_errors": failed[:3],
        f"{prefix}_p50_ms": round(pct(latencies, 50) * 1000, 2),
        f"{prefix}_p99_ms": round(pct(latencies, 99) * 1000, 2),
    }


def _routed(port: int, host: str) -> bool:
    conn = Connection("127.0.0.1", port)
    try:
        return fetch(conn, "GET", "/", {"Host": host})[0].status == 200
    except (OSError, NoResponse, BrokenResponse):
        return False
    finally:
        conn.close()


def list_time(agent: Agent, n: int) -> tuple[float, int]:
    """Median ms of 7 GET /v1/containers, and how many it lists as running."""
    times, running = [], 0
    for _ in range(7):
        started = time.perf_counter()
        listed = agent.call("GET", "/v1/containers")["containers"]
        times.append(time.perf_counter() - started)
        running = sum(1 for c in listed if c["state"] == "running")
    return round(statistics.median(times) * 1000, 1), running


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from bench.router import _router, _setup_django

    _setup_django(workdir / "data")
    figures: dict[str, Any] = {"instances": args.instances}
    with registry(workdir / "registry") as setup:
        (workdir / "image").mkdir()
        image_ref = push_busybox_image(setup, workdir / "image")
        # Room for N addresses on the agent's bridge (a /24 holds 253 containers).
        subnet = IPv4Network(f"10.{100 + secrets.randbelow(100)}.{4 * secrets.randbelow(64)}.0/22")
        daemon = AgentDaemon(
            workdir / "agent",
            env={"PAAS_AGENT_REGISTRY_CA": setup.ca_file, "PAAS_AGENT_LOG_LEVEL": "WARNING"},
            subnet=subnet,
        )
        agent = Agent(daemon)
        try:
            daemon.start()
            assert daemon.proc is not None
            pull = {"ref": image_ref, "registry_auth": pull_auth(setup, image_ref)}
            agent.call("POST", "/v1/images/pull", pull)
            with _router(workdir) as router_port:
                figures["agent_rss_idle_mib"], figures["agent_pss_idle_mib"] = rss_pss(
                    daemon.proc.pid
                )
                figures["nginx_pss_idle_mib"] = nginx_pss_mib()
                available_before = mem_available()
                started = time.perf_counter()
                apps = start_apps(
                    agent, image_ref, secrets.token_hex(2), args.instances, args.concurrency
                )
                figures["start_all_s"] = round(time.perf_counter() - started, 1)
                started = time.perf_counter()
                hosts = route_all(apps)
                figures["router_apply_s"] = round(time.perf_counter() - started, 2)
                answering = sum(1 for host in hosts if _routed(router_port, host))
                figures["answering_through_router"] = answering
                figures["agent_list_ms"], running = list_time(agent, args.instances)
                figures["instances_running"] = min(running, answering)
                stats = agent.call("GET", "/v1/stats")["containers"]
                own = sum(int(s["memory_bytes"]) for s in stats)
                delta = available_before - mem_available()
                figures["containers_own_mib"] = round(own / MIB, 1)
                figures["mem_available_drop_mib"] = round(delta / MIB, 1)
                figures["host_mib_per_instance"] = round((delta - own) / MIB / args.instances, 2)
                figures["agent_rss_mib"], figures["agent_pss_mib"] = rss_pss(daemon.proc.pid)
                figures["nginx_pss_mib"] = nginx_pss_mib()
                # The platform's own processes' share per instance: steadier
                # than the machine-wide figure, but without the kernel's part.
                grown = (figures["agent_pss_mib"] - figures["agent_pss_idle_mib"]) + (
                    figures["nginx_pss_mib"] - figures["nginx_pss_idle_mib"]
                )
                figures["platform_pss_kib_per_instance"] = round(grown * 1024 / args.instances, 1)
                helpers, figures["agent_descendants"] = helper_processes(daemon.proc.pid)
                figures["helper_processes"] = len(helpers)
                figures["helper_examples"] = helpers[:3]
                figures["helper_processes_per_container"] = round(len(helpers) / args.instances, 3)
                # Baseline in the same run: the same random GETs straight to
                # the containers (busybox httpd closes every connection, so
                # direct requests each connect; nginx keeps its client side).
                routed = [("127.0.0.1", router_port, host) for host in hosts]
                direct = [(apps[name], HTTP_PORT, host) for host, name in hosts.items()]
                figures |= latency("direct", direct, args.requests, keep_alive=False)
                figures |= latency("router", routed, args.requests, keep_alive=True)
        finally:
            with contextlib.suppress(Exception):
                remove_all(agent, args.concurrency)
            daemon.cleanup()
            figures["leftovers"] = leftovers(daemon)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=GOAL_INSTANCES, help="N apps to start")
    parser.add_argument("--concurrency", type=int, default=8, help="creates in flight at once")
    parser.add_argument("--requests", type=int, default=2000, help="GETs through the router")
    args = parser.parse_args()
    if not 1 <= args.instances <= 1000:
        parser.error("--instances must be 1..1000 (the agent's subnet here is a /22)")
    if os.geteuid() != 0:
        print("density: needs root (runc, netns, nftables)", file=sys.stderr)
        return 2

    # SIGTERM unwinds like Ctrl-C, through every cleanup below.
    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    load_before = os.getloadavg()
    with scratch() as workdir:
        figures = measure(args, workdir)
    figures["loadavg_before"] = [round(x, 2) for x in load_before]
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    goals = {
        "instances": GOAL_INSTANCES,
        "helper_processes_per_container": 0,
        "router_p99_ms_max": GOAL_ROUTER_P99_MS,
        "agent_list_ms_max": GOAL_LIST_MS,
    }
    ok = (
        figures["instances_running"] == args.instances >= GOAL_INSTANCES
        and figures["helper_processes"] == 0
        and figures["router_failed"] == 0
        and figures["router_p99_ms"] < GOAL_ROUTER_P99_MS
        and figures["agent_list_ms"] < GOAL_LIST_MS
        and not figures["leftovers"]
    )
    print(json.dumps({"bench": "density", "figures": figures, "goals": goals, "ok": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
