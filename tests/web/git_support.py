"""Parts of the git tests (which serve the platform with
tests/support/daphne.py, as in production): the real git client with an
environment of its own, and small repositories made from the samples."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.daphne import Daphne
from tests.web.deploy_support import SAMPLE


class GitClient:
    """The real git client, isolated from this machine's config."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@example.com",
            "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@example.com",
            "LANG": "C",
        }  # fmt: skip

    def run(
        self, *args: str, cwd: Path, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=900,
            input=input if input is not None else "",
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"git {args} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def repo(self, path: Path, files: dict[str, str] | None = None, sample: bool = True) -> Path:
        """A repository with one commit on main: the hello-world sample
        (unless ``sample`` is false) plus ``files``."""
        path.mkdir(parents=True)
        if sample:
            for item in SAMPLE.iterdir():
                shutil.copy(item, path / item.name)
        for name, text in (files or {}).items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        self.run("init", "--quiet", "--initial-branch=main", cwd=path)
        self.run("add", "-A", cwd=path)
        self.run("commit", "--quiet", "-m", "first", cwd=path)
        return path

    def push(self, repo: Path, url: str, *refspecs: str) -> subprocess.CompletedProcess[str]:
        return self.run("push", "--porcelain", url, *(refspecs or ("main",)), cwd=repo,
                        check=False)  # fmt: skip


def remote(daphne: Daphne, app: str, token: str) -> str:
    return f"http://alice:{token}@127.0.0.1:{daphne.port}/git/{app}.git"
