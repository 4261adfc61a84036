"""Benchmark: what the router costs, and what its reloads cost.

Needs root and nginx and wrk (scripts/test installs both). From the
repository root::

    .venv/bin/python bench/router.py [--rounds 5] [--seconds 3] [--reloads 50]

Everything runs on loopback and is stopped at the end: backends from
bench/support/backend.py, each its own process with keep-alive and
TCP_NODELAY (``stdlib``: Python's http.server answering JSON, like the
platform's hello-world samples; ``raw``: an asyncio Protocol writing a fixed
response, the least a server can do), and the platform's router (nginx from
``router_prepare()``, as ``manage.py router_serve`` runs it, one worker per
CPU) with a route ``bench.localhost``.

1. Throughput: ``wrk`` (one thread, 8 keep-alive connections, ``--seconds``
   each) straight to the backend and through the router, alternating which
   goes first, ``--rounds`` times. Three sets: the stdlib backend with a
   browser's request headers (the goal), the same with wrk's bare request
   (``bare_*``), and the raw backend with the bare request (``raw_*``: the
   router's own cost at its most visible). Figures per set: the median
   requests/s and p99 latency of each side, wrk's error count, ``ratio``
   (the median over rounds of router/direct requests/s: each round's two
   runs are back to back, so they share the machine's load of the moment),
   the CPU microseconds per request spent by the backend, nginx's workers and
   wrk (from /proc and getrusage), ``backend_cost_ratio`` (direct/router
   backend CPU per request: the ratio the backend allows when it is the
   bottleneck), ``machine_busy_median`` (the share of all CPUs busy
   during the runs, other people's work included) and ``others_busy_median``
   (the share other processes than this run's took: above a quarter, the
   rates say more about the neighbours than about the router). Goal: ratio
   >= 0.8 on a quiet machine (``quiet``: others_busy_median <= 0.25); a run
   on a busy one reports its figures but is not ``ok``.

   Why the comparison is set up this way (profiled on 2026-12-04, a shared
   2-core VM). The stdlib backend is the bottleneck, not nginx nor wrk: it
   holds one core (its GIL) while the machine has CPU to spare, and nginx's
   workers take 20-30 us per request, wrk ~10. What the router changes is
   the backend's own work: Python parses every header at ~3 us each, so the
   headers the router adds (X-Forwarded-For/-Proto, X-Request-Id; until
   today also X-Forwarded-Host/-Port, dropped as they repeat Host) raised the
   backend's CPU per bare request from ~35 to ~54 us, which alone caps the
   ratio near 0.65: the 0.56-0.63 measured before. Two things made that
   comparison unfair, and are fixed:

   - wrk's bare request has only a Host header, so the router's additions
     more than double what the backend parses; a browser sends a dozen
     (``BROWSER_HEADERS``), and the goal is about such requests. The bare
     figures are still reported, not hidden.
   - The backend's threads were free to run on both cores, and handing the
     GIL across cores costs it up to twice the CPU per request depending on
     what else runs (35-100 us for the same direct run): that, not the
     router, is why a quiet machine gave 0.6 and a loaded one 1.0. The
     backends are now pinned to one CPU, as a container under the agent's
     default one-CPU limit is held to one CPU's worth.

   With a browser's headers the backend still spends ~15 us more per
   request through the router (~62 -> ~77 us): ~5 for the three headers the
   router adds, ~3 for serving twice the connections (each nginx worker
   keeps its own; measured with wrk -c16 direct), the rest from sharing its
   core with nginx's workers (cache, wake-ups): the hop's own cost on two
   shared cores, which no config removes.

   Upstream keep-alive is in use (the raw backend's CPU per request is the
   same through the router as direct: no connect per request), the access
   log is buffered (turning it off changed nothing measurable), and nginx
   runs one worker per CPU (one worker instead changed nothing measurable
   either: it is not the bottleneck). Against the raw backend the hop
   itself shows: nginx spends 2-3 times the backend's CPU per request, so
   on two shared cores ``raw_ratio`` stays near 0.5; no config fixes that.
   The log follower, which turns each access log line into a stored app
   log line in production, does not run here: its cost is not in these
   figures.

   Measured after these changes, 7 runs on 2026-12-04 21:12-21:37 UTC, with
   the machine saturated by other work in every run (load average 9-15,
   ``machine_busy_median`` 1.0): ``ratio`` 0.58, 0.82, 0.89, 0.99, 1.09,
   1.29, 1.33 (median 0.99: router runs above 1 show how much the
   neighbours, not the router, set the rates then); ``backend_cost_ratio``
   0.72-0.89 (median 0.79); backend CPU per request 58-68 us direct, 75-82
   us through the router; nginx 29-44 us; ``bare_ratio`` median 0.81;
   ``raw_ratio`` median 0.61; 0 failed requests through 50 reloads each
   time (56-74k requests, 95-117 retries). So ``backend_cost_ratio``, the
   router's effect on the backend alone, sits right at 0.8: the goal is at
   its edge and was not shown met on a quiet machine (none was available).
2. Reloads under load: the browser-like client (bench/support/http_load.py:
   4 workers, keep-alive, one retry of a GET that got no response byte on a
   reused connection, counted) sends requests through the router while
   ``router_apply`` is called ``--reloads`` times, each with a different set
   of upstreams (first backend, second, both), as a deploy does. Figures:
   requests, failed (goal 0), retries, p99 latency meanwhile, and the wall
   time of one apply (write, ``nginx -t``, swap, SIGHUP, wait until only
   new workers accept).

The last line is {"bench": "router", "figures": {...}, "goals": {...}, "ok": ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `paas` and `bench` importable
    sys.path.insert(0, str(REPO))

from bench.support.harness import free_port  # noqa: E402
from bench.support.harness import stop as stop_process  # noqa: E402

GOAL_RATIO = 0.8
QUIET_OTHERS_MAX = 0.25  # of all CPUs, used by other work during the throughput runs
HOST = "bench.localhost"
START_TIMEOUT_S = 20.0


def _setup_django(data_dir: Path) -> None:
    os.environ["PAAS_DATA_DIR"] = str(data_dir)
    os.environ["PAAS_ROUTER_PORT"] = str(free_port())
    os.environ["PAAS_ROUTER_HTTPS_PORT"] = str(free_port())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paas.settings")
    import django

    django.setup()


@contextlib.contextmanager
def _process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out)
    try:
        yield proc
    finally:
        stop_process(proc, grace_s=15)


@dataclass(frozen=True)
class Backend:
    pid: int
    port: int


@contextlib.contextmanager
def _backend(kind: str, name: str, work: Path) -> Iterator[Backend]:
    argv = [sys.executable, str(REPO / "bench/support/backend.py"), kind, name]
    with _process(argv, work / f"backend-{name}.log") as proc:
        # One CPU, as a container with the agent's default limit of one CPU
        # (and a GIL) gets: set before it serves, so its threads inherit it.
        os.sched_setaffinity(proc.pid, {max(os.sched_getaffinity(0))})
        assert proc.stdout is not None
        yield Backend(proc.pid, int(proc.stdout.readline()))


@contextlib.contextmanager
def _router(work: Path) -> Iterator[int]:
    from django.conf import settings

    from paas.router.services import router_prepare, router_status

    with _process(router_prepare(), work / "nginx.out") as proc:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not router_status().running:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the router's nginx did not start; see its error.log")
            time.sleep(0.02)
        yield int(settings.PAAS_ROUTER_PORT)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")

# What a browser sends with a page request (Chromium's headers, a session
# cookie): the request the goal is about. wrk alone sends only Host.
BROWSER_HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language: en-US,en;q=0.9",
    "Accept-Encoding: gzip, deflate, br",
    "Cookie: sessionid=0123456789abcdefghijklmnopqrstuv; csrftoken=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
    "Sec-Fetch-Dest: document",
    "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-Site: none",
    "Upgrade-Insecure-Requests: 1",
)


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (gone ones: 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total * _TICK_S


def _machine_busy() -> tuple[int, int]:
    """(all, idle) jiffies of every CPU so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


def _nginx_workers() -> list[int]:
    from paas.router import master
    from paas.router.config import RouterConfig

    pid = master.master_pid(RouterConfig.from_settings())
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def _wrk(port: int, seconds: int, headers: tuple[str, ...], backend: Backend) -> dict[str, float]:
    from runtime_agent.host.cmd import run

    argv = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}"]
    for header in headers:
        argv += ["-H", header]
    argv.append(f"http://127.0.0.1:{port}/")
    watched = {"backend": [backend.pid], "nginx": _nginx_workers()}
    cpu_before = {name: _cpu_s(pids) for name, pids in watched.items()}
    machine_before, wrk_before = _machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = run(argv, timeout=seconds + 60).stdout.decode()
    machine_after, wrk_after = _machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not rps or not p99:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    # Non-2xx answers and socket errors (timeouts under a loaded machine
    # included) are counted, not hidden: they are reported beside the rates.
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    requests = float(rps.group(1)) * seconds
    cpu = {name: _cpu_s(pids) - cpu_before[name] for name, pids in watched.items()}
    cpu["wrk"] = (wrk_after.ru_utime + wrk_after.ru_stime) - (
        wrk_before.ru_utime + wrk_before.ru_stime
    )
    jiffies, idle = (a - b for a, b in zip(machine_after, machine_before, strict=True))
    return {
        "rps": float(rps.group(1)),
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)],
        "errors": errors,
        **{f"{name}_us_per_req": seconds_ * 1e6 / requests for name, seconds_ in cpu.items()},
        "machine_busy": 1 - idle / jiffies,
        # The share of all CPUs that processes other than this run's used.
        "others_busy": max(
            0.0, 1 - idle / jiffies - sum(cpu.values()) / (seconds * (os.cpu_count() or 1))
        ),
    }


def _throughput(
    backend: Backend, router_port: int, rounds: int, seconds: int, headers: tuple[str, ...]
) -> dict[str, Any]:
    from paas.router.routes import Route, Upstream
    from paas.router.services import router_apply

    router_apply(routes=[Route("bench", (HOST,), (Upstream("127.0.0.1", backend.port),))])
    runs: dict[str, list[dict[str, float]]] = {"direct": [], "router": []}
    for i in range(rounds):
        order = [("direct", backend.port), ("router", router_port)]
        for name, port in order if i % 2 == 0 else order[::-1]:
            runs[name].append(_wrk(port, seconds, headers, backend))
    figures: dict[str, Any] = {}
    for name, samples in runs.items():
        figures[f"{name}_rps"] = round(statistics.median(s["rps"] for s in samples))
        figures[f"{name}_p99_ms"] = round(statistics.median(s["p99_ms"] for s in samples), 3)
        figures[f"{name}_rps_runs"] = [round(s["rps"]) for s in samples]
        figures[f"{name}_errors"] = sum(int(s["errors"]) for s in samples)
        for cost in ("backend", "nginx", "wrk"):
            if name == "direct" and cost == "nginx":
                continue
            key = f"{cost}_us_per_req"
            figures[f"{name}_{key}"] = round(statistics.median(s[key] for s in samples), 1)
    # Each round's pair ran back to back under the same outside load: the
    # median of the paired ratios is steadier than the ratio of the medians.
    pairs = [r["rps"] / d["rps"] for d, r in zip(runs["direct"], runs["router"], strict=True)]
    figures["ratio"] = round(statistics.median(pairs), 3)
    # The ratio the backend's own CPU cost allows when it is the bottleneck
    # and nginx has CPU of its own: steady on a busy machine, unlike rps.
    figures["backend_cost_ratio"] = round(
        figures["direct_backend_us_per_req"] / figures["router_backend_us_per_req"], 3
    )
    # How busy the whole machine (others' work included) was meanwhile.
    busy = [s["machine_busy"] for samples in runs.values() for s in samples]
    figures["machine_busy_median"] = round(statistics.median(busy), 2)
    others = [s["others_busy"] for samples in runs.values() for s in samples]
    figures["others_busy_median"] = round(statistics.median(others), 2)
    return figures


def _reloads(router_port: int, ports: list[int], reloads: int) -> dict[str, Any]:
    from bench.support.http_load import LoadResult, run_load
    from paas.router.routes import Route, Upstream

    sets = [ports[:1], ports[1:], ports]
    stop = threading.Event()
    outcome: list[LoadResult] = []

    def load() -> None:
        outcome.append(
            run_load(
                host="127.0.0.1",
                port=router_port,
                host_header=HOST,
                workers=4,
                duration_s=300,
                stop=stop,
            )  # fmt: skip
        )

    thread = threading.Thread(target=load)
    thread.start()
    from paas.router.services import router_apply

    applies = []
    try:
        for i in range(reloads):
            ups = tuple(Upstream("127.0.0.1", p) for p in sets[i % len(sets)])
            started = time.perf_counter()
            router_apply(routes=[Route("bench", (HOST,), ups)])
            applies.append(time.perf_counter() - started)
    finally:
        stop.set()
        thread.join()
    result = outcome[0]
    return {
        "reloads": len(applies),
        "requests": result.requests,
        "failed": result.failed,
        "retries": result.retries,
        "errors": result.errors[:5],
        "p99_ms": round(statistics.quantiles(result.latencies_s, n=100)[98] * 1000, 2),
        "apply_ms_p50": round(statistics.median(applies) * 1000, 1),
        "apply_ms_max": round(max(applies) * 1000, 1),
        "reload_seconds": round(result.elapsed_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--reloads", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk (scripts/test installs it)")
    work = Path(tempfile.mkdtemp(prefix="bench-router-"))
    try:
        _setup_django(work)
        with (
            _backend("stdlib", "one", work) as one,
            _backend("stdlib", "two", work) as two,
            _backend("raw", "raw", work) as raw,
            _router(work) as router_port,
        ):
            runs = {
                "": (one, BROWSER_HEADERS),
                "bare_": (one, ()),
                "raw_": (raw, ()),
            }
            results = {}
            for prefix, (backend, headers) in runs.items():
                results[prefix] = _throughput(
                    backend, router_port, args.rounds, args.seconds, headers
                )
                print(json.dumps({f"throughput_{prefix or 'goal_'}": results[prefix]}), flush=True)
            ports = [one.port, two.port]
            reload_figures = _reloads(router_port, ports, args.reloads)
            print(json.dumps({"reloads": reload_figures}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = dict(results[""])
    for prefix in ("bare_", "raw_"):
        figures |= {f"{prefix}{k}": v for k, v in results[prefix].items() if "_runs" not in k}
    figures |= {f"reload_{k}": v for k, v in reload_figures.items() if k != "errors"}
    # A ratio measured while other work held a good part of the CPUs says
    # little (it swung from 0.58 to 1.33 so): such a run cannot meet the goal.
    figures["quiet"] = figures["others_busy_median"] <= QUIET_OTHERS_MAX
    goals = {"ratio_min": GOAL_RATIO, "reload_failed_max": 0, "others_busy_max": QUIET_OTHERS_MAX}
    ok = figures["ratio"] >= GOAL_RATIO and reload_figures["failed"] == 0 and figures["quiet"]
    print(json.dumps({"bench": "router", "figures": figures, "goals": goals, "ok": ok}))


if __name__ == "__main__":
    main()
