"""The agent as a real process: ``python -m runtime_agent`` starts, answers its
API with the auth matrix, drains on SIGTERM and exits cleanly, and a second
agent process re-adopts the container the first one left running."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent_harness import REPO, AgentProcess, cleanup
from tests.support.images import HTTP_PORT
from tests.support.processes import free_port, wait_until

needs_root = pytest.mark.root


@pytest.fixture
def agent(tmp_agent_root: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess.fresh(tmp_agent_root / "agent")
    try:
        yield proc
    finally:
        cleanup(proc)


def run_agent_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAAS_AGENT_")}
    return subprocess.run(
        [sys.executable, "-m", "runtime_agent"],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_it_exits_2_naming_the_variable_on_a_bad_setting(tmp_path):
    done = run_agent_with(
        {
            "PAAS_AGENT_ROOT": str(tmp_path),
            "PAAS_AGENT_TOKEN": "alice-token-0123456789abcdef",
            "PAAS_AGENT_SUBNET": "10.0.0.0/33",
        }
    )
    assert done.returncode == 2
    assert "PAAS_AGENT_SUBNET" in done.stderr
    assert "configuration error" in done.stderr


def test_it_exits_2_when_the_token_file_is_missing(tmp_path):
    done = run_agent_with(
        {"PAAS_AGENT_ROOT": str(tmp_path), "PAAS_AGENT_TOKEN_FILE": str(tmp_path / "nope")}
    )
    assert done.returncode == 2
    assert "PAAS_AGENT_TOKEN_FILE" in done.stderr


@needs_root
@pytest.mark.root
def test_the_agent_process_answers_the_auth_matrix_and_exits_cleanly_on_sigterm(agent):
    agent.start()
    assert agent.request("GET", "/v1/info", token=None)[0] == 401
    assert agent.request("GET", "/v1/info", token="mallory-" + agent.token)[0] == 403
    status, info = agent.request("GET", "/v1/info")
    assert status == 200
    assert info["api_version"] == "v1"
    assert info["agent"]["pid"] == agent.proc.pid
    assert info["cpus"] >= 1

    assert agent.terminate() == 0  # a clean exit on SIGTERM, not a SIGKILL after the grace
    log = agent.stderr()
    assert "SIGTERM" in log
    assert "agent stopped" in log
    # Timestamped lines: 2026-01-01T00:00:00.000Z LEVEL name: message
    assert log.splitlines()[0][:4].isdigit() and "Z " in log.splitlines()[0]
    with pytest.raises(OSError):
        urllib.request.urlopen(agent.url + "/v1/info", timeout=2)


@needs_root
@pytest.mark.root
def test_it_exits_1_when_its_port_is_taken(agent):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", agent.port))
        s.listen()
        agent.start(wait=False)
        assert agent.proc is not None
        assert agent.proc.wait(timeout=60) == 1
    assert "cannot start" in agent.stderr()


def fetch(port: int, timeout_s: float = 10.0) -> str:
    def body() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return None

    return wait_until(body, timeout_s=timeout_s, what=f"an answer on port {port}")


def alive(pid: int) -> bool:
    """Running (a zombie is not: once no agent is its subreaper, some other
    ancestor reaps it whenever it gets to it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def raw_ticks(agent: AgentProcess, name: str) -> int:
    """Ticks the container wrote to its stdout file (readable with no agent)."""
    raw = agent.root / "containers" / name / "logs" / "stdout.raw"
    return raw.read_bytes().count(b"tick ")


def ticks(agent: AgentProcess, name: str) -> list[int]:
    status, lines = agent.request("GET", f"/v1/containers/{name}/logs?tail=all")
    assert status == 200
    return [int(x["line"].split()[1]) for x in lines if x["line"].startswith("tick ")]


@needs_root
@pytest.mark.root
def test_sigterm_leaves_a_container_serving_and_the_next_agent_process_readopts_it(
    agent, registry, busybox_image
):
    agent.extra_env = registry.agent_env()
    agent.start()
    name, host_port = f"survivor-{agent.bridge[2:]}", free_port()
    script = (
        f"httpd -f -p {HTTP_PORT} -h /www & "
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"
    )
    status, info = agent.request(
        "POST",
        "/v1/containers",
        {
            "name": name,
            "image": busybox_image.ref,
            "cmd": ["sh", "-c", script],
            "ports": [{"container_port": HTTP_PORT, "host_port": host_port}],
        },
    )
    assert status == 201, info
    assert fetch(host_port) == busybox_image.index_body
    before = ticks(agent, name)

    assert agent.terminate() == 0
    assert alive(info["pid"])  # still running without any agent
    assert fetch(host_port) == busybox_image.index_body  # and still published
    written = raw_ticks(agent, name)
    # It keeps logging while no agent is there.
    wait_until(lambda: raw_ticks(agent, name) >= written + 3, what="ticks with no agent")

    agent.start()  # a second agent process on the same root
    status, again = agent.request("GET", f"/v1/containers/{name}")
    assert status == 200
    assert (again["state"], again["pid"]) == ("running", info["pid"])
    assert again["address"] == info["address"]
    wait_until(
        lambda: len(ticks(agent, name)) >= len(before) + 5,
        what="the ticks written while no agent ran, read by the next one",
    )
    after = ticks(agent, name)
    # Continuous: every tick from before, through the gap, with none missing.
    assert after[: len(before)] == before
    assert after == list(range(after[0], after[0] + len(after)))
    assert len(after) >= len(before) + 5

    status, removed = agent.request("DELETE", f"/v1/containers/{name}?force=1")
    assert (status, removed) == (200, {"name": name, "removed": True})
    assert not alive(info["pid"])
    assert agent.terminate() == 0


@needs_root
@pytest.mark.root
def test_sigterm_lets_a_request_in_flight_finish_before_the_agent_exits(
    agent, registry, busybox_image
):
    agent.extra_env = registry.agent_env()
    agent.start()
    name = f"stubborn-{agent.bridge[2:]}"
    # A shell ignoring SIGTERM: a stop with a 1.5 s grace period takes 1.5 s.
    status, _ = agent.request(
        "POST",
        "/v1/containers",
        {"name": name, "image": busybox_image.ref, "cmd": ["sh", "-c", "trap '' TERM; sleep 300"]},
    )
    assert status == 201
    answers: list[tuple[int, object]] = []
    stopper = threading.Thread(
        target=lambda: answers.append(
            agent.request("POST", f"/v1/containers/{name}/stop", {"timeout_s": 1.5})
        )
    )
    stopper.start()
    wait_until(  # the stop is now in flight
        lambda: agent.request("GET", f"/v1/containers/{name}")[1]["state"] == "stopping",
        what=f"{name} stopping",
    )
    assert agent.proc is not None
    os.kill(agent.proc.pid, signal.SIGTERM)
    stopper.join(timeout=15)
    status, info = answers[0]
    assert status == 200
    assert isinstance(info, dict) and info["state"] == "exited"
    assert agent.proc.wait(timeout=15) == 0


@needs_root
@pytest.mark.root
def test_without_a_token_it_generates_a_private_one_says_where_and_accepts_only_it(agent):
    agent.extra_env = {"PAAS_AGENT_TOKEN": ""}  # empty counts as unset
    token_file = agent.root / "token"
    agent.token = "not-known-yet-0123456789"
    agent.start(wait=False)
    # Until the file is there AND written (it is created first, then filled).
    wait_until(lambda: token_file.exists() and token_file.read_text().strip(), what="the token")
    agent.token = token_file.read_text().strip()
    agent.wait_ready()
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert str(token_file) in agent.stderr()
    assert agent.token not in agent.stderr()  # the secret itself is never logged
    assert agent.request("GET", "/v1/info", token="bob-token-0123456789abcdef")[0] == 403
    assert agent.terminate() == 0


@needs_root
@pytest.mark.root
def test_the_agent_raises_its_open_files_limit_to_the_hard_one(agent):
    # Each container holds fds in the agent: a soft limit of 1024 (systemd's
    # and most shells' default) would run out at a few hundred containers.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        agent.start()  # inherits the low soft limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = Path(f"/proc/{agent.proc.pid}/limits").read_text()
    (line,) = [x for x in limits.splitlines() if x.startswith("Max open files")]
    assert line.split()[3:5] == [str(hard), str(hard)]
    assert f"open files limit raised from {low} to {hard}" in agent.stderr()
