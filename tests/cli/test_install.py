"""The CLI installs on its own: into an empty virtualenv, from this
repository's cli/ directory, with nothing of the server's stack."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pip_installs_the_cli_without_the_platform(tmp_path: Path) -> None:
    venv = tmp_path / "laptop"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # As on a laptop: pip fetches the build backend (setuptools) from the
    # package index; the client itself has no dependencies to fetch.
    # From a copy: setuptools builds in the source tree (build/, *.egg-info).
    source = shutil.copytree(REPO / "cli", tmp_path / "cli")
    subprocess.run([*pip, "install", "-q", str(source)], check=True, cwd=tmp_path)
    help_text = subprocess.run(
        [str(venv / "bin" / "paas"), "deploy", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "upload this directory, build it and roll it out" in help_text
    installed = subprocess.run([*pip, "list", "--format=freeze"], capture_output=True, text=True,
                               check=True).stdout.lower()  # fmt: skip
    assert "paas-cli==" in installed
    for server_part in ("django", "celery", "pyroute2", "channels"):
        assert f"{server_part}==" not in installed


def test_without_credentials_it_says_how_to_log_in(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO / "cli")}
    done = subprocess.run([sys.executable, "-m", "paas_cli", "apps"], capture_output=True,
                          text=True, env=env)  # fmt: skip
    assert done.returncode == 1
    assert "Not logged in: run `paas login --url" in done.stderr
