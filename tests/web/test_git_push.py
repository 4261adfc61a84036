"""`git push` deploys: the real git client over HTTP to the platform served
by daphne on loopback, a real Celery worker building what was pushed.
Refusals (bad token, another team's app, bad refs) and the rule that no hook
ever runs on the server are checked on the same real parts."""

from __future__ import annotations

import os
import select
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas.accounts.services import api_token_create
from paas.applications.services import app_create
from paas.builds.models import Build, BuildLogLine, BuildState
from paas.builds.services import build_cancel
from paas.gitdeploy.repos import repo_path, repos_root
from paas.gitdeploy.services import git_settings_update
from tests.support.daphne import Daphne, run_daphne
from tests.web.deploy_support import wait_for
from tests.web.git_support import GitClient, remote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]


@pytest.fixture(autouse=True)
def _no_repositories_left() -> Iterator[None]:
    """The platform's repositories made by a test go with it."""
    yield
    shutil.rmtree(repos_root(), ignore_errors=True)


@pytest.fixture
def web(workers: Any, tmp_path: Path) -> Iterator[Daphne]:
    # Keepalive packets between the lines of every push (the client must
    # take them in its stride).
    with run_daphne({**workers.env, "PAAS_GIT_KEEPALIVE_S": "0.1"}, tmp_path) as daphne:
        yield daphne


@pytest.fixture
def git(tmp_path: Path) -> GitClient:
    return GitClient(tmp_path / "home")


@pytest.fixture
def token(alice: Any) -> str:
    return api_token_create(user=alice, name="laptop")[1]


@pytest.fixture
def hello(alice: Any) -> Any:
    return app_create(user=alice, team=alice.personal_team, name="hello")


def test_a_wrong_token_is_refused(web: Daphne, git: GitClient, hello: Any, tmp_path: Path) -> None:
    repo = git.repo(tmp_path / "src")
    result = git.push(repo, remote(web, "hello", "paas_not-a-token"))
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr
    anonymous = git.push(repo, f"{web.url}/git/hello.git")
    assert anonymous.returncode != 0
    assert not Build.objects.exists()


def test_a_push_to_another_teams_app_is_refused(
    web: Daphne, git: GitClient, hello: Any, bob: Any, tmp_path: Path
) -> None:
    bobs_token = api_token_create(user=bob, name="bob")[1]
    repo = git.repo(tmp_path / "src")
    result = git.push(repo, remote(web, "hello", bobs_token))
    assert result.returncode != 0
    assert "not found" in result.stderr.lower()
    assert not Build.objects.exists()
    assert not repo_path(app=hello).exists()


def test_a_viewer_cannot_push(
    web: Daphne, git: GitClient, hello: Any, carol_viewer_in_alices_team: Any, tmp_path: Path
) -> None:
    carols_token = api_token_create(user=carol_viewer_in_alices_team, name="carol")[1]
    repo = git.repo(tmp_path / "src")
    result = git.push(repo, remote(web, "hello", carols_token))
    assert result.returncode != 0
    assert "403" in result.stderr
    assert not Build.objects.exists()


def test_a_push_to_another_branch_is_stored_and_no_hook_runs(
    web: Daphne, git: GitClient, hello: Any, token: str, tmp_path: Path
) -> None:
    # A hook where git would look for one (the repository's own hooks/ and
    # the pushed tree) must never run: it would write the canary.
    canary = tmp_path / "canary"
    hook = f"#!/bin/sh\necho ran > {canary}\n"
    repo = git.repo(tmp_path / "src", files={"hooks/post-receive": hook})
    git.run("checkout", "--quiet", "-b", "feature", cwd=repo)
    first = git.push(repo, remote(web, "hello", token), "feature")
    assert first.returncode == 0, first.stderr
    server_repo = repo_path(app=hello)
    for name in ("pre-receive", "update", "post-receive", "post-update", "reference-transaction"):
        (server_repo / "hooks").mkdir(exist_ok=True)
        (server_repo / "hooks" / name).write_text(hook)
        os.chmod(server_repo / "hooks" / name, stat.S_IRWXU)
    (repo / "more.txt").write_text("more\n")
    git.run("add", "more.txt", cwd=repo)
    git.run("commit", "--quiet", "-m", "more", cwd=repo)

    second = git.push(repo, remote(web, "hello", token), "feature")

    assert second.returncode == 0, second.stderr
    assert "Stored, not deployed (the deploy branch is main)" in second.stderr
    assert not canary.exists()
    sha = git.run("rev-parse", "HEAD", cwd=repo).stdout.strip()
    stored = git.run(f"--git-dir={server_repo}", "rev-parse", "refs/heads/feature", cwd=tmp_path)
    assert stored.stdout.strip() == sha
    assert not Build.objects.exists()
    # And it can be fetched back (upload-pack through the same endpoint).
    git.run("clone", "--quiet", "--branch", "feature", remote(web, "hello", token),
            str(tmp_path / "clone"), cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "clone" / "more.txt").read_text() == "more\n"


def test_the_wsgi_test_server_streams_git_too(
    live_server: Any, git: GitClient, hello: Any, token: str, tmp_path: Path
) -> None:
    """The same view under WSGI (Django's live server): a sync stream."""
    url = f"http://alice:{token}@{live_server.url.removeprefix('http://')}/git/hello.git"
    repo = git.repo(tmp_path / "src")
    git.run("checkout", "--quiet", "-b", "feature", cwd=repo)
    result = git.push(repo, url, "feature")
    assert result.returncode == 0, result.stderr
    assert "Stored, not deployed" in result.stderr
    git.run("clone", "--quiet", "--branch", "feature", url, str(tmp_path / "clone"), cwd=tmp_path)
    assert (tmp_path / "clone" / "app.py").exists()


def test_bad_refs_and_dot_git_trees_are_refused(
    web: Daphne, git: GitClient, hello: Any, token: str, tmp_path: Path
) -> None:
    repo = git.repo(tmp_path / "src")
    notes = git.push(repo, remote(web, "hello", token), "main:refs/notes/x")
    assert notes.returncode != 0
    assert "only branches and tags can be pushed" in notes.stdout
    # A tree holding ".git" (git refuses to make one; plumbing can) is
    # caught by the fsck of every received object.
    evil_tree = _tree_with_dot_git(git, repo)
    commit = git.run("commit-tree", evil_tree, "-m", "evil", cwd=repo).stdout.strip()
    evil = git.push(repo, remote(web, "hello", token), f"{commit}:refs/heads/evil")
    assert evil.returncode != 0
    assert "dotgit" in (evil.stdout + evil.stderr).lower()
    assert not Build.objects.exists()


def _tree_with_dot_git(git: GitClient, repo: Path) -> str:
    hook = git.run("hash-object", "-w", "--stdin", cwd=repo, input="#!/bin/sh\n").stdout.strip()
    hooks = _mktree(git, repo, f"100755 blob {hook}\tpost-checkout\n")
    dot_git = _mktree(git, repo, f"040000 tree {hooks}\thooks\n")
    return _mktree(git, repo, f"040000 tree {dot_git}\t.git\n")


def _mktree(git: GitClient, repo: Path, listing: str) -> str:
    return git.run("mktree", cwd=repo, input=listing).stdout.strip()


def test_a_failing_build_fails_the_push(
    web: Daphne, workers: Any, git: GitClient, hello: Any, token: str, tmp_path: Path
) -> None:
    workers.start()
    repo = git.repo(tmp_path / "src", files={"notes.txt": "nothing to build\n"}, sample=False)

    result = git.push(repo, remote(web, "hello", token))

    assert result.returncode != 0, result.stderr
    build = Build.objects.get(app=hello)
    assert build.state == BuildState.FAILED
    # The build's own log reached the pusher, then the refusal.
    assert "remote: -----> Build #1 queued" in result.stderr
    assert "remote: build failed: cannot tell how to build this source" in result.stderr
    assert "remote: !!     Deploy failed: build failed" in result.stderr
    assert "refs/heads/main:refs/heads/main\t[remote rejected] (build failed)" in result.stdout
    # The branch is put back: pushing the same commit again tries again.
    assert (
        "refs/heads/main"
        not in git.run(
            f"--git-dir={repo_path(app=hello)}", "show-ref", cwd=tmp_path, check=False
        ).stdout
    )


def test_the_deploy_branch_is_a_setting(
    web: Daphne, workers: Any, git: GitClient, alice: Any, hello: Any, token: str, tmp_path: Path
) -> None:
    git_settings_update(user=alice, app=hello, deploy_branch="production")
    workers.start()
    repo = git.repo(tmp_path / "src", files={"notes.txt": "nothing to build\n"}, sample=False)
    stored = git.push(repo, remote(web, "hello", token), "main")
    assert stored.returncode == 0, stored.stderr
    assert not Build.objects.exists()
    built = git.push(repo, remote(web, "hello", token), "main:production")
    assert built.returncode != 0
    assert Build.objects.filter(app=hello).count() == 1


def test_the_build_log_streams_while_the_build_runs_and_a_cancel_fails_the_push(
    web: Daphne, workers: Any, git: GitClient, hello: Any, token: str, tmp_path: Path
) -> None:
    """Lines reach the pusher as they are written, not at the end: the
    build is still running when its first lines arrive."""
    workers.start()
    # A step of its own (no cache could have it built already) that runs long.
    dockerfile = f"FROM stack\nRUN echo step-started {uuid.uuid4()} && sleep 600\n"
    repo = git.repo(tmp_path / "src", files={"Dockerfile": dockerfile}, sample=False)
    push = subprocess.Popen(
        ["git", "push", "--porcelain", remote(web, "hello", token), "main"], cwd=repo,
        env=git.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert push.stderr is not None
    seen = b""
    try:
        deadline = time.monotonic() + 300  # a buffered push would say nothing until the end
        while b"step-started" not in seen:
            ready, _, _ = select.select([push.stderr], [], [], max(0, deadline - time.monotonic()))
            assert ready, f"no build line reached the pusher while it ran: {seen!r}"
            chunk = os.read(push.stderr.fileno(), 65536)
            assert chunk, f"the push ended early: {seen.decode(errors='replace')}"
            seen += chunk
        build = Build.objects.get(app=hello)
        assert build.state == BuildState.BUILDING
        build_cancel(build=build)
        out, err = push.communicate(timeout=300)
    finally:
        if push.poll() is None:
            push.kill()
            push.wait()
        # Whatever happened, the long step must not outlive the test: a
        # cancelled build's container is removed by its worker.
        for running in Build.objects.filter(app=hello):
            build_cancel(build=running)
        if Build.objects.filter(app=hello, started_at__isnull=False).exists():
            wait_for(lambda: b"Build cancelled" in _build_log(hello), 120, "the step's removal")
    assert push.returncode != 0
    assert "[remote rejected] (build cancelled)" in out.decode()


def _build_log(app: Any) -> bytes:
    lines = BuildLogLine.objects.filter(build__app=app).values_list("text", flat=True)
    return "\n".join(lines).encode()
