"""Parts of the git tests: the real platform served by daphne (as in
production), the real git client with an environment of its own, and small
repositories made from the samples."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port, start_process, stop_process, wait_for_port
from tests.web.deploy_support import SAMPLE

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Daphne:
    port: int
    log: Path
    pid: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_daphne(env: dict[str, str], tmp: Path, port: int | None = None) -> Iterator[Daphne]:
    """daphne serving the platform on a free loopback port (or ``port``: a
    restart is a second block on the same), on the test's database (``env``
    is the workers' environment)."""
    port = port or free_port()
    log_path = tmp / f"daphne-{port}.log"
    with open(log_path, "ab") as log:
        proc = start_process(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "paas.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout_s=90, proc=proc)
        yield Daphne(port, log_path, proc.pid)
    finally:
        stop_process(proc)


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
