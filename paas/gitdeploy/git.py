"""The one wrapper every git command of the platform goes through.

git reads configuration from many places (system and global files, the
environment, the repository) and runs programs named there (hooks, ssh,
askpass, credential helpers, fsmonitor, ``ext::`` transports). Every git
the platform starts therefore gets a clean environment built here, not the
server's: no system or global config, a HOME with nothing in it, no
terminal prompt, and forced settings (``GIT_CONFIG_COUNT``, which outranks
any file) that switch hooks off, check every received object, and allow
only the https and ssh transports. A pushed repository never brings config
(git does not transfer it), and these outrank what the repository has.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from runtime_agent.host import cmd
from runtime_agent.host.private import private_dir

GIT = "/usr/bin/git"


def git_home() -> Path:
    """An empty directory of the platform's: git's HOME and hooks directory."""
    home = private_dir(Path(settings.PAAS_GIT_DIR) / "empty")
    if any(home.iterdir()):
        # Something put files where hooks or config would be read from.
        raise RuntimeError(f"{home} must stay empty (git's HOME and hooks path)")
    return home


def forced_config(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Settings that win over every config file (git's command-line scope)."""
    home = str(git_home())
    values = {
        "core.hooksPath": home,
        "core.fsmonitor": "false",
        "core.sshCommand": "ssh -o BatchMode=yes",
        "receive.fsckObjects": "true",
        "transfer.fsckObjects": "true",
        "fetch.fsckObjects": "true",
        "protocol.allow": "never",
        "protocol.https.allow": "always",
        "protocol.ssh.allow": "always",
        "submodule.recurse": "false",
        "credential.helper": "",
        **(extra or {}),
    }
    return values


def clean_env(
    extra_config: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a git process (nothing of the server's)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(git_home()),
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
    }
    config = forced_config(extra_config)
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    env.update(extra_env or {})
    return env


def repo_config(repo: Path) -> dict[str, str]:
    # Web (service user) and worker (root) may both open a repository.
    return {"safe.directory": str(repo)}


def git_run(
    args: Sequence[str],
    *,
    repo: Path | None = None,
    config: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float | None = 60,
    failure_expected: bool = False,
    check: bool = True,
    stdout: int | IO[Any] | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git [--git-dir repo] args``; raise CommandFailed on failure."""
    argv = [GIT] + ([f"--git-dir={repo}"] if repo else []) + list(args)
    merged = {**(repo_config(repo) if repo else {}), **(config or {})}
    return cmd.run(
        argv,
        env=clean_env(merged, env),
        input=input,
        timeout=timeout,
        failure_expected=failure_expected,
        check=check,
        stdin=None if input is not None else subprocess.DEVNULL,
        stdout=stdout,
    )


def git_popen(
    args: Sequence[str],
    *,
    repo: Path | None = None,
    config: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start git for a caller that streams (http-backend, archive)."""
    argv = [GIT] + ([f"--git-dir={repo}"] if repo else []) + list(args)
    merged = {**(repo_config(repo) if repo else {}), **(config or {})}
    return cmd.popen(argv, stdin=stdin, env=clean_env(merged, env))


def is_dir_repo(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and not path.is_symlink()
