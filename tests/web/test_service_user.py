"""scripts/as-service-user, the way scripts/up starts the web, beat, the
registry and Redis: the command runs as the named unprivileged user, with no
capabilities, and writes files no other user can read."""

from __future__ import annotations

import os
import subprocess

from tests.web.conftest import ROOT

# A user every Debian system has; scripts/up makes and uses "paas" instead.
USER = "nobody"


def _as_service_user(tmp_path, script):
    os.chmod(tmp_path, 0o777)  # somewhere the unprivileged user may write
    return subprocess.run(
        [str(ROOT / "scripts" / "as-service-user"), "sh", "-c", script],
        env={**os.environ, "PAAS_SERVICE_USER": USER},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()


def test_it_runs_the_command_as_the_service_user_without_capabilities(tmp_path):
    name, groups, cap_eff, cap_bnd = _as_service_user(
        tmp_path,
        "id -un; id -G | tr ' ' ,; grep CapEff /proc/self/status | cut -f2;"
        " grep CapBnd /proc/self/status | cut -f2",
    )
    assert name == USER
    assert "0" not in groups.split(",")
    assert int(cap_eff, 16) == 0
    assert int(cap_bnd, 16) == 0


def test_what_it_writes_is_private(tmp_path):
    _as_service_user(tmp_path, "echo x > file; mkdir dir")
    assert (tmp_path / "file").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "dir").stat().st_mode & 0o777 == 0o750


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): command.split() for name, command in entries}


def test_scripts_up_runs_only_the_worker_the_agent_and_nginxs_master_as_root():
    processes = _procfile()
    as_root = {name for name, argv in processes.items() if argv[0] != "scripts/as-service-user"}
    # The router's nginx master binds the public ports and reads the TLS
    # keys; its workers, which talk to clients, run as nobody (router/render.py).
    assert as_root == {"worker", "agent", "router"}
    # Beat and the log follower run in the service user's web process.
    assert {"web", "registry", "redis"} <= processes.keys()
    assert processes["web"][1:4] == [".venv/bin/python", "-m", "paas.web"]
    assert "--singletons" in processes["web"]


def test_scripts_up_is_in_production_mode_unless_given_dev():
    up = (ROOT / "scripts" / "up").read_text()
    assert 'mode="${PAAS_MODE:-production}"' in up
    assert "--dev) mode=development ;;" in up
    assert 'export PAAS_MODE="$mode"' in up
