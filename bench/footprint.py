"""Benchmark: the platform's own memory, idle, on one host (issue 13, "Scale
on one host", second item).

Needs root and what ``scripts/up`` installs (it runs it). From the
repository root::

    .venv/bin/python bench/footprint.py [--settle 45] [--exercise]

What it does: runs ``scripts/up`` itself, the README's run command, in a new
session, with a throwaway data dir (/tmp/pf-XXXX), free ports for Redis, the
registry, the web, the agent and the router, and its own bridge, subnet and
nftables tables for the agent and the build network (so it clashes with
nothing else on the host), the stack cache of the tests
(``PAAS_BUILD_CACHE_DIR``, default /var/cache/paas-build-test: no
debootstrap) and a random admin password. It waits until the platform is
ready (``GET /login/`` answers 200, the agent answers ``GET /v1/info`` with
its token, the router accepts connections), then lets it idle ``--settle``
seconds (beat's periodic tasks run meanwhile, so the worker has run tasks,
as it has on any live platform), and sums the PSS
(``Pss:`` of /proc/<pid>/smaps_rollup) of every process descending from the
``scripts/up`` it started (nginx included), by kind: PSS splits each shared
page among the processes that map it, so the sum counts a page once however
many processes share it (a prefork child's untouched pages cost it little)
and the figures add up.

Baseline (to compare runs across machines): ``baseline_mib`` is the PSS of a
bare ``python -c 'import django'`` (this venv's Python, waiting on stdin)
measured before the platform starts; ``total_per_baseline`` is the total
over it.

With ``--exercise`` it then also proves the platform works end to end as
started: makes an API token (``manage.py shell`` as the service user),
creates an app through the API, uploads tests/samples/hello-world and waits
until ``GET /`` through the router with ``Host: <app>.localhost`` answers
200 (the build, the registry push, the deploy and the route all ran:
``upload_to_routed_s``), and counts the processes in the agent's process
group besides the agent (``agent_group_others``, 0 expected: the supervisor
stops a line's whole group, and containers must outlive the platform).

Stopping: SIGTERM to ``scripts/up``'s PID (it is the Procfile's supervisor
by then, scripts/run_procfile.py, which stops its children); anything of the
recorded tree still alive after that (same PID and start time) is killed by
PID. Then, as the agent leaves its
containers and network in place on purpose, its containers are deleted
through runc, mounts under its root unmounted, its bridge, nftables tables
and the build network removed, and the data dir deleted.

Goals: total <= 250 MiB, the agent <= 40 MiB (it runs on every host). The
last line is {"bench": "footprint", "figures": {...}, "goals": {...}, "ok": ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support.harness import AgentDaemon, free_port, wait_until  # noqa: E402
from runtime_agent.host.cmd import run  # noqa: E402
from runtime_agent.net.bridge import HostNetwork  # noqa: E402

MIB = 1024 * 1024
GOALS = {"total_mib": 250, "agent_mib": 40}
SAMPLE = REPO / "tests" / "samples" / "hello-world"
STACK_CACHE = os.environ.get("PAAS_BUILD_CACHE_DIR", "/var/cache/paas-build-test")
START_TIMEOUT_S = 600.0  # first run: packages, venv extras, migrations on a busy machine


# --- processes ---------------------------------------------------------------


def pss_kib(pid: int) -> int:
    """The process's PSS in KiB (0 if it is gone or has no memory of its own)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in ticks), or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process under ``root`` (itself included): PID -> start time."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[1]
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            found[pid] = starts[pid]
            todo.extend(children.get(pid, []))
    return found


def argv_of(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    return []


def kind_of(pid: int, tree: dict[int, int]) -> str:
    """What a process of the platform is, from its command line (and, for a
    prefork child, its parent's)."""
    argv = argv_of(pid)
    line = " ".join(argv)
    name = Path(argv[0]).name if argv else "?"
    parent = _stat(pid)
    in_worker = parent is not None and _is_worker(argv_of(parent[0]))
    rules = [
        ("honcho" in line or "run_procfile" in line, "supervisor"),
        (name in ("sh", "bash", "dash") and "-c" in argv, "shell wrapper"),
        (name in ("bash", "up") or line.endswith("scripts/up"), "scripts/up"),
        ("redis-server" in line, "redis"),
        ("docker-registry" in line, "registry"),
        ("paas.web" in argv and "--singletons" in argv, "web + beat + log follower"),
        ("daphne" in line or "paas.web" in argv, "web (daphne)"),
        ("beat" in line.split(), "beat"),
        (_is_worker(argv) and in_worker, "worker child"),
        (_is_worker(argv), "worker parent"),
        ("runtime_agent" in line, "agent"),
        ("nginx" in line or "router_serve" in line, "router (nginx)"),
        ("logs_follow" in line, "log follower"),
        ("singletons" in line, "beat + log follower"),
    ]
    for matched, kind in rules:
        if matched:
            return kind
    return f"other ({name})"


def _is_worker(argv: list[str]) -> bool:
    """A Celery worker's own process (a shell that runs one is not)."""
    return (
        bool(argv)
        and Path(argv[0]).name not in ("sh", "bash", "dash")
        and (any(Path(a).name == "celery" for a in argv) and "worker" in argv)
    )


def measure(root: int) -> dict[str, dict[str, Any]]:
    """PSS by kind of every process under ``root``: {kind: {mib, processes}}."""
    tree = descendants(root)
    kinds: dict[str, dict[str, Any]] = {}
    for pid in tree:
        kind = kinds.setdefault(kind_of(pid, tree), {"kib": 0, "processes": 0})
        kind["kib"] += pss_kib(pid)
        kind["processes"] += 1
    return {
        k: {"mib": round(v["kib"] / 1024, 1), "processes": v["processes"]}
        for k, v in sorted(kinds.items())
    }


def baseline_mib() -> float:
    """PSS of a bare Python that imported django, waiting on stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import django, sys; print(1, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return round(pss_kib(proc.pid) / 1024, 1)
    finally:
        proc.kill()
        proc.wait()


# --- the platform --------------------------------------------------------------


def platform_env(data: Path) -> dict[str, str]:
    # Named like bench/support's agents, so that AgentDaemon.cleanup finds its objects.
    agent_net = AgentDaemon(root=data / "agent", env={})
    suffix = agent_net.suffix
    web, agent = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAAS_", "REDIS_"))}
    env.update(
        {
            "PAAS_DATA_DIR": str(data),
            "PAAS_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "PAAS_BUILD_CACHE_DIR": STACK_CACHE,
            "REDIS_PORT": str(free_port()),
            "REGISTRY_PORT": str(free_port()),
            "WEB_PORT": str(web),
            "PAAS_PANEL_URL": f"http://127.0.0.1:{web}",
            "PAAS_AGENT_LISTEN": f"127.0.0.1:{agent}",
            "PAAS_ROUTER_PORT": str(free_port()),
            "PAAS_ROUTER_HTTPS_PORT": str(free_port()),
            "PAAS_AGENT_BRIDGE": agent_net.bridge,
            "PAAS_AGENT_SUBNET": str(agent_net.subnet),
            "PAAS_AGENT_NFT_TABLE": agent_net.nft_table,
            "PAAS_BUILD_BRIDGE": f"pfb{suffix}",
            "PAAS_BUILD_SUBNET": str(AgentDaemon(root=data, env={}).subnet),
            "PAAS_BUILD_NFT_TABLE": f"paas_pfb_{suffix}",
        }
    )
    return env


def http_status(port: int, path: str, host: str = "127.0.0.1") -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path, headers={"Host": host})
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return 0


def agent_answers(env: dict[str, str]) -> bool:
    token_file = Path(env["PAAS_DATA_DIR"]) / "agent" / "token"
    host, port = env["PAAS_AGENT_LISTEN"].rsplit(":", 1)
    try:
        token = token_file.read_text().strip()
        # Loopback, the agent this bench started: its pin is not the point here.
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(host, int(port), timeout=5, context=context)
        conn.request("GET", "/v1/info", headers={"Authorization": f"Bearer {token}"})
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def ready(proc: subprocess.Popen[bytes], env: dict[str, str]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"scripts/up exited with {proc.returncode}")
    return (
        http_status(int(env["WEB_PORT"]), "/login/") == 200
        and agent_answers(env)
        and http_status(int(env["PAAS_ROUTER_PORT"]), "/", "nothing.localhost") > 0
    )


def stop(proc: subprocess.Popen[bytes], recorded: dict[int, int]) -> list[int]:
    """SIGTERM to scripts/up (the supervisor by then); then SIGKILL, by PID, whatever of the
    recorded tree is still the same process. Returns the PIDs killed so."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=60)
    with contextlib.suppress(RuntimeError):
        wait_until(
            lambda: not any(_same(pid, start) for pid, start in recorded.items()),
            timeout_s=30,
            what="the platform's processes to exit",
        )
    killed = [pid for pid, start in recorded.items() if _same(pid, start)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return killed


def _same(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == start


def remove_leftovers(env: dict[str, str]) -> None:
    """The agent keeps containers and its network across restarts on purpose:
    remove them, the build network and the data dir."""
    data = Path(env["PAAS_DATA_DIR"])
    # Never started by this object (proc None): cleanup only removes.
    agent = AgentDaemon(
        root=data / "agent",
        env={},
        suffix=env["PAAS_AGENT_BRIDGE"].removeprefix("pb"),
        subnet=IPv4Network(env["PAAS_AGENT_SUBNET"]),
    )
    agent.cleanup()
    with contextlib.suppress(Exception):
        HostNetwork(
            data / "builds" / "net",
            env["PAAS_BUILD_BRIDGE"],
            IPv4Network(env["PAAS_BUILD_SUBNET"]),
            env["PAAS_BUILD_NFT_TABLE"],
        ).teardown()
    run(["rm", "-rf", "--one-file-system", str(data)], check=False)


@contextlib.contextmanager
def platform(log: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], dict[int, int]]]:
    data = Path(tempfile.mkdtemp(prefix="pf-", dir="/tmp"))
    env = platform_env(data)
    recorded: dict[int, int] = {}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(REPO / "scripts" / "up")],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc, env, recorded
    finally:
        recorded.update(descendants(proc.pid))
        killed = stop(proc, recorded)
        if killed:
            # With --exercise these include the app's container processes
            # (they outlive the platform by design; removed below as well).
            print(f"still alive after the stop, killed by PID: {killed}", file=sys.stderr)
        remove_leftovers(env)


# --- exercise: upload the hello sample and get it through the router ---------


def api_token(env: dict[str, str]) -> str:
    code = (
        "from django.contrib.auth.models import User;"
        "from paas.accounts.services import api_token_create;"
        "print(api_token_create(user=User.objects.get(username='admin'), name='bench')[1])"
    )
    result = subprocess.run(
        [
            str(REPO / "scripts" / "as-service-user"),
            ".venv/bin/python",
            "manage.py",
            "shell",
            "-c",
            code,
        ],  # fmt: skip
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def api(env: dict[str, str], token: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", int(env["WEB_PORT"]), timeout=60)
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    conn.request(method, f"/api/v1{path}", headers=headers, **kw)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, json.loads(body) if body else None


def sample_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(SAMPLE.iterdir()):
            tar.add(path, arcname=path.name)
    return buf.getvalue()


def exercise(env: dict[str, str]) -> float:
    """Upload the sample through the API; seconds until the router serves it."""
    token = api_token(env)
    status, body = api(
        env, token, "POST", "/apps", body=json.dumps({"name": "hello"}),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    if status not in (200, 201):
        raise RuntimeError(f"POST /apps answered {status}: {body}")
    boundary = secrets.token_hex(8)
    payload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="source"; '
            'filename="hello.tar.gz"\r\nContent-Type: application/gzip\r\n\r\n'
        ).encode()
        + sample_archive()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    started = time.monotonic()
    status, body = api(
        env, token, "POST", "/apps/hello/builds", body=payload,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    if status not in (200, 201, 202):
        raise RuntimeError(f"upload answered {status}: {body}")
    router = int(env["PAAS_ROUTER_PORT"])
    wait_until(
        lambda: http_status(router, "/", "hello.localhost") == 200,
        timeout_s=300,
        what="hello.localhost through the router",
    )
    return round(time.monotonic() - started, 1)


def agent_group_others(root: int) -> int:
    """Processes in the agent's process group besides the agent (0 expected:
    scripts/up stops a line's whole group, and containers must outlive it)."""
    tree = descendants(root)
    agents = [pid for pid in tree if kind_of(pid, tree) == "agent"]
    if not agents:
        return -1
    return sum(
        1
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != agents[0]
        and _pgid(int(entry.name)) == agents[0]
    )


def _pgid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


# --- main ----------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=45.0, help="idle seconds before measuring")
    parser.add_argument("--exercise", action="store_true", help="then deploy the hello sample")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/footprint.py needs root (scripts/up does)")
    base = baseline_mib()
    log = Path(tempfile.mkstemp(prefix="footprint-", suffix=".log")[1])
    figures: dict[str, Any] = {"baseline_mib": base}
    ok = False
    try:
        with platform(log) as (proc, env, recorded):
            started = time.monotonic()
            wait_until(lambda: ready(proc, env), timeout_s=START_TIMEOUT_S, what="the platform")
            figures["ready_s"] = round(time.monotonic() - started, 1)
            time.sleep(args.settle)  # idle on purpose: beat's tasks run meanwhile
            recorded.update(descendants(proc.pid))
            kinds = measure(proc.pid)
            total = sum(k["mib"] for k in kinds.values())
            figures.update(
                total_mib=round(total, 1),
                processes=sum(k["processes"] for k in kinds.values()),
                agent_mib=kinds.get("agent", {}).get("mib", 0.0),
                total_per_baseline=round(total / base, 2),
                by_kind=kinds,
            )
            for kind, k in kinds.items():
                print(f"{kind:>16}: {k['mib']:7.1f} MiB in {k['processes']} process(es)")
            print(f"{'total':>16}: {total:7.1f} MiB ({total / base:.1f}x a bare 'import django')")
            if args.exercise:
                figures["upload_to_routed_s"] = exercise(env)
                recorded.update(descendants(proc.pid))
                figures["agent_group_others"] = agent_group_others(proc.pid)
            ok = total <= GOALS["total_mib"] and figures["agent_mib"] <= GOALS["agent_mib"]
    except Exception as exc:
        figures["error"] = f"{type(exc).__name__}: {exc}"
        print(log.read_text()[-4000:], file=sys.stderr)
        ok = False
    finally:
        figures["log"] = str(log)
    print(json.dumps({"bench": "footprint", "figures": figures, "goals": GOALS, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
