"""Push webhooks: a signed GitHub-style event (or a GitLab token) makes a
real Celery worker fetch the commit over HTTPS, from a git host on loopback
with a test CA and credentials, and build it. Bad signatures are 403 and
logged; a redelivered event deploys once; local and ext:: repository URLs
are refused when they are set."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas.applications.models import App, AuditEntry, AuditResult, Release
from paas.applications.services import app_create
from paas.builds.models import Build, BuildState
from paas.core.errors import ValidationFailed
from paas.gitdeploy.models import WebhookDelivery
from paas.gitdeploy.services import git_settings_update
from tests.support.git_https import GitHost, make_ca, serve_git_https
from tests.support.processes import free_port
from tests.web.deploy_support import SAMPLE, wait_for
from tests.web.git_support import GitClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]
SECRET = "a-webhook-secret-of-some-length"
CREDENTIALS = "deploy-bot:s3cret-token"


@pytest.fixture
def git_host(tmp_path: Path) -> Iterator[GitHost]:
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    ca = make_ca(ca_dir)
    (tmp_path / "served").mkdir()
    with serve_git_https(tmp_path / "served", ca, credentials=CREDENTIALS) as host:
        yield host


@pytest.fixture
def source(tmp_path: Path, git_host: GitHost) -> tuple[GitClient, Path]:
    """alice's repository, published as src.git on the git host."""
    git = GitClient(tmp_path / "home")
    repo = git.repo(tmp_path / "src", files={"notes.txt": "nothing to build\n"}, sample=False)
    _publish(git, repo, git_host)
    return git, repo


def _publish(git: GitClient, repo: Path, host: GitHost) -> None:
    served = host.root / "src.git"
    shutil.rmtree(served, ignore_errors=True)
    git.run("clone", "--quiet", "--bare", str(repo), str(served), cwd=repo.parent)


@pytest.fixture
def hello(alice: Any, git_host: GitHost) -> App:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    git_settings_update(user=alice, app=app, repo_url=git_host.url("src.git"),
                        repo_credentials=CREDENTIALS, webhook_secret=SECRET)  # fmt: skip
    return app


@pytest.fixture
def worker(workers: Any, git_host: GitHost) -> Any:
    workers.env["PAAS_GIT_FETCH_CA_BUNDLE"] = str(git_host.ca.ca_file)
    workers.env["PAAS_GIT_FETCH_ALLOWED_NETWORKS"] = "127.0.0.1/32"  # the test's git host
    workers.start()
    return workers


def _push_event(sha: str, ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": sha, "repository": {"name": "src"}}).encode()


def _github(client: Any, body: bytes, *, secret: str = SECRET, delivery: str = "") -> Any:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        "/hooks/git/hello", body, content_type="application/json",
        HTTP_X_GITHUB_EVENT="push", HTTP_X_GITHUB_DELIVERY=delivery or str(uuid.uuid4()),
        HTTP_X_HUB_SIGNATURE_256=signature,
    )  # fmt: skip


def _head(git: GitClient, repo: Path) -> str:
    return git.run("rev-parse", "HEAD", cwd=repo).stdout.strip()


def test_a_signed_push_event_fetches_and_builds_the_commit_once(
    client: Any, worker: Any, hello: App, source: tuple[GitClient, Path], git_host: GitHost
) -> None:
    git, repo = source
    sha = _head(git, repo)
    delivery = str(uuid.uuid4())

    response = _github(client, _push_event(sha), delivery=delivery)

    assert response.status_code == 202, response.content
    build = wait_for(lambda: Build.objects.filter(app=hello).first(), 120, "the build")
    build = wait_for(lambda: Build.objects.filter(pk=build.pk, finished_at__isnull=False).first(),
                     300, "the build to end")  # fmt: skip
    # The commit's tree reached the builder (this one has nothing to build).
    assert build.state == BuildState.FAILED and "cannot tell how to build" in build.error
    assert build.archive_name == f"{sha[:12]}.tar"
    assert WebhookDelivery.objects.get(app=hello).build_id == build.pk
    fetched = [r for r in git_host.requests if "upload-pack" in r]
    assert fetched, git_host.requests

    # The same delivery again, and another delivery of the same commit.
    again = _github(client, _push_event(sha), delivery=delivery)
    other = _github(client, _push_event(sha))
    assert (again.status_code, again.json()["result"]) == (200, "duplicate")
    assert (other.status_code, other.json()["result"]) == (200, "duplicate")
    assert Build.objects.filter(app=hello).count() == 1
    assert WebhookDelivery.objects.filter(app=hello).count() == 1


def test_a_gitlab_token_deploys_a_new_commit(
    client: Any, worker: Any, hello: App, source: tuple[GitClient, Path], git_host: GitHost
) -> None:
    """The hello-world sample this time: built and made a release."""
    git, repo = source
    for item in SAMPLE.iterdir():
        shutil.copy(item, repo / item.name)
    git.run("add", "-A", cwd=repo)
    git.run("commit", "--quiet", "-m", "the app", cwd=repo)
    _publish(git, repo, git_host)
    sha = _head(git, repo)

    response = client.post(
        "/hooks/git/hello", _push_event(sha), content_type="application/json",
        HTTP_X_GITLAB_EVENT="Push Hook", HTTP_X_GITLAB_TOKEN=SECRET,
    )  # fmt: skip

    assert response.status_code == 202, response.content
    delivery = wait_for(
        lambda: WebhookDelivery.objects.filter(build__isnull=False).first(), 120, "a build"
    )
    build = wait_for(
        lambda: Build.objects.filter(pk=delivery.build_id, finished_at__isnull=False).first(),
        600, "the build to end",
    )  # fmt: skip
    assert build.state == BuildState.SUCCEEDED, build.error
    # It becomes a release like an upload's (no host runs it in this test).
    wait_for(lambda: Release.objects.filter(build=build).exists(), 60, "its release")


def test_bad_signatures_are_refused_and_logged(
    client: Any, hello: App, caplog: pytest.LogCaptureFixture
) -> None:
    body = _push_event("a" * 40)
    with caplog.at_level(logging.WARNING, logger="paas.gitdeploy.webhooks"):
        forged = _github(client, body, secret="not-the-secret-at-all")
        unsigned = client.post("/hooks/git/hello", body, content_type="application/json",
                               HTTP_X_GITHUB_EVENT="push")  # fmt: skip
        gitlab = client.post("/hooks/git/hello", body, content_type="application/json",
                             HTTP_X_GITLAB_EVENT="Push Hook",
                             HTTP_X_GITLAB_TOKEN="wrong")  # fmt: skip
    assert [forged.status_code, unsigned.status_code, gitlab.status_code] == [403, 403, 403]
    assert sum("webhook for hello refused" in r.getMessage() for r in caplog.records) == 3
    refused = AuditEntry.objects.filter(app=hello, action="webhook", result=AuditResult.REFUSED)
    assert refused.count() == 3
    assert not WebhookDelivery.objects.exists()


def test_a_push_to_another_branch_is_ignored(client: Any, hello: App) -> None:
    response = _github(client, _push_event("b" * 40, ref="refs/heads/feature"))
    assert (response.status_code, response.json()["result"]) == (200, "ignored")
    assert not WebhookDelivery.objects.exists()


def test_an_app_without_a_secret_has_no_webhook(client: Any, alice: Any) -> None:
    app_create(user=alice, team=alice.personal_team, name="plain")
    response = client.post("/hooks/git/plain", b"{}", content_type="application/json")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "file:///srv/repo.git", "/srv/repo.git", "./repo", "../repo", "ext::sh -c touch% /tmp/x",
        "ext::ssh host", "http://example.com/repo.git", "git://example.com/repo.git",
        "https://example.com/a.git\nfile:///x", "-upload-pack=touch /tmp/x", "ssh://-oProxyCommand=x/r",
        "git@-oProxyCommand=x:repo", "https://user:pw@example.com/repo.git", "fd::17",
        "https:///nohost", "C:\\repo",
    ],
)  # fmt: skip
def test_local_and_ext_urls_are_refused_when_set(alice: Any, url: str) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    with pytest.raises(ValidationFailed):
        git_settings_update(user=alice, app=app, repo_url=url)


@pytest.mark.parametrize(
    "url",
    ["https://github.com/alice/hello.git", "ssh://git@gitlab.com:2222/alice/hello.git",
     "git@github.com:alice/hello.git", "https://127.0.0.1:8443/src.git"],
)  # fmt: skip
def test_https_and_ssh_urls_are_accepted(alice: Any, url: str) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="hello")
    assert git_settings_update(user=alice, app=app, repo_url=url).settings.repo_url == url


def test_git_refuses_other_transports_even_if_a_url_got_in(tmp_path: Path) -> None:
    """The second line of defence: the platform's git config itself."""
    from paas.gitdeploy.git import clean_env

    canary = tmp_path / "canary"
    proc = subprocess.run(
        ["git", "ls-remote", f"ext::sh -c touch% {canary}"], env=clean_env(),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode != 0 and not canary.exists()
    local = subprocess.run(["git", "ls-remote", str(tmp_path)], env=clean_env(),
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert local.returncode != 0 and "transport 'file' not allowed" in local.stderr


def test_a_fetch_goes_to_allowed_addresses_and_trusts_only_the_configured_cas(
    settings: Any, hello: App, source: tuple[GitClient, Path], git_host: GitHost
) -> None:
    from paas.gitdeploy.fetch import fetched_commit
    from paas.gitdeploy.models import GitSettings

    git, repo = source
    sha, row = _head(git, repo), GitSettings.objects.get(app=hello)
    settings.BUILD_DIR = git_host.root.parent / "builds"
    with (
        pytest.raises(ValidationFailed, match="not public"),
        fetched_commit(row=row, branch="main", sha=sha),
    ):
        pass  # loopback is the platform's own network, unless allowed
    assert not any("upload-pack" in r for r in git_host.requests)
    settings.PAAS_GIT_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.PAAS_GIT_FETCH_CA_BUNDLE = str(git_host.ca.ca_file)
    with fetched_commit(row=row, branch="main", sha=sha) as fetched:
        assert (fetched / "objects").is_dir()
    # By name too: git connects to the address that was checked (pinned).
    row.repo_url = f"https://localhost:{git_host.port}/src.git"
    with fetched_commit(row=row, branch="main", sha=sha) as fetched:
        assert (fetched / "objects").is_dir()
    settings.PAAS_GIT_FETCH_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
    with (
        pytest.raises(ValidationFailed, match="certificate"),
        fetched_commit(row=row, branch="main", sha=sha),
    ):
        pass
    # A commit that is not on the deploy branch is not deployed.
    settings.PAAS_GIT_FETCH_CA_BUNDLE = str(git_host.ca.ca_file)
    with (
        pytest.raises(ValidationFailed, match="is not on main"),
        fetched_commit(row=row, branch="main", sha="c" * 40),
    ):
        pass


def test_an_ssh_fetch_fails_cleanly_with_its_key_kept_private(
    settings: Any, alice: Any, tmp_path: Path
) -> None:
    from paas.gitdeploy.fetch import fetched_commit

    app = app_create(user=alice, team=alice.personal_team, name="hello")
    settings.BUILD_DIR = tmp_path / "builds"
    settings.PAAS_GIT_FETCH_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    port = free_port()
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
    url = f"ssh://git@127.0.0.1:{port}/r.git"
    change = git_settings_update(user=alice, app=app, repo_url=url, repo_credentials=key)
    with (
        pytest.raises(ValidationFailed, match="Fetching ssh://"),
        fetched_commit(row=change.settings, branch="main", sha="d" * 40),
    ):
        pass
    assert list((tmp_path / "builds").iterdir()) == []  # the key went with the scratch dir
