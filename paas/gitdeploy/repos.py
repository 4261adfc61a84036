"""The platform's bare repository of each app.

Its path is made from the app's id and creation time under ``PAAS_GIT_DIR``
(never from a URL or a name a person typed; the time keeps an app that
reuses an id, after a database restore say, off an old app's repository).
It is made with an empty template (no sample hooks) and the settings that
keep it safe are both written into its config and forced on every git
command (see :mod:`paas.gitdeploy.git`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from django.conf import settings

from paas.applications.models import App
from paas.gitdeploy.git import git_home, git_run, is_dir_repo
from runtime_agent.host.private import private_dir

REPO_CONFIG = {
    "core.hooksPath": "",  # filled with the platform's empty directory
    "receive.fsckObjects": "true",
    "receive.denyNonFastForwards": "false",
    "receive.denyDeleteCurrent": "true",
    "core.logAllRefUpdates": "true",
    "gc.auto": "0",
}


def repos_root() -> Path:
    return private_dir(Path(settings.PAAS_GIT_DIR) / "repos")


def repo_path(*, app: App) -> Path:
    stamp = int(app.created_at.timestamp() * 1_000_000)
    return repos_root() / f"app-{int(app.pk)}-{stamp}.git"


def repo_ensure(*, app: App) -> Path:
    """The app's bare repository, made on first use (made aside and renamed
    into place, so two first pushes at once both end with one repository)."""
    path = repo_path(app=app)
    if is_dir_repo(path):
        return path
    tmp = repos_root() / f".new-{uuid.uuid4().hex}"
    try:
        git_run(["init", "--bare", "--quiet", "--template=", str(tmp)])
        for key, value in REPO_CONFIG.items():
            git_run(["config", key, value or str(git_home())], repo=tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            if not is_dir_repo(path):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def repo_delete(*, path: Path) -> None:
    """Remove a deleted app's repository (``path`` from :func:`repo_path`)."""
    if path.parent == repos_root() and path.name.startswith("app-"):
        shutil.rmtree(path, ignore_errors=True)


def ref_sha(*, repo: Path, ref: str) -> str | None:
    """The commit ``ref`` points at, or None when it does not exist."""
    proc = git_run(
        ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        repo=repo,
        check=False,
        failure_expected=True,
    )
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None
