"""A webhook's git fetch over ssh checks the host's key, against a real sshd on
loopback: with no key set the first fetch pins the key it saw and a changed
key is refused after, saying what to do; a key the operator set is checked
strictly from the first fetch on. Keys are validated when set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paas.applications.models import App, AuditEntry
from paas.applications.services import app_create
from paas.core.errors import ValidationFailed
from paas.gitdeploy.fetch import HostKeyRefused, fetched_commit
from paas.gitdeploy.hostkeys import HostKeyOrigin, host_keys_validate
from paas.gitdeploy.models import GitSettings
from paas.gitdeploy.services import git_settings_of, git_settings_update
from tests.support.sshd import SshServer, make_key, public_key, run_sshd
from tests.web.git_support import GitClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "keys").mkdir()
    return {name: make_key(tmp_path / "keys" / name) for name in ("host_a", "host_b", "client")}


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, str]:
    """A bare repository with one commit, and that commit."""
    git = GitClient(tmp_path / "home")
    repo = git.repo(tmp_path / "src", files={"notes.txt": "hi\n"}, sample=False)
    bare = tmp_path / "served" / "src.git"
    git.run("clone", "--quiet", "--bare", str(repo), str(bare), cwd=tmp_path)
    return bare, git.run("rev-parse", "HEAD", cwd=repo).stdout.strip()


@pytest.fixture
def hello(alice: Any, settings: Any, tmp_path: Path) -> App:
    settings.BUILD_DIR = tmp_path / "builds"
    settings.PAAS_GIT_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the test's sshd
    return app_create(user=alice, team=alice.personal_team, name="hello")


def _fetch(app: App, sha: str) -> None:
    with fetched_commit(row=git_settings_of(app=app), branch="main", sha=sha) as repo:
        assert (repo / "objects").is_dir()


def _point_at(alice: Any, app: App, server: SshServer, bare: Path) -> None:
    git_settings_update(user=alice, app=app, repo_url=server.url(bare),
                        repo_credentials=server.client_key.read_text())  # fmt: skip


def test_the_first_fetch_pins_the_key_it_saw_and_a_changed_key_is_refused(
    alice: Any, hello: App, keys: dict[str, Path], served: tuple[Path, str], tmp_path: Path
) -> None:
    bare, sha = served
    with run_sshd(tmp_path / "sshd", host_key=keys["host_a"], client_key=keys["client"]) as a:
        _point_at(alice, hello, a, bare)
        _fetch(hello, sha)
        row = git_settings_of(app=hello)
        assert (row.ssh_host_keys, row.ssh_host_keys_origin) == (
            public_key(keys["host_a"]),
            HostKeyOrigin.FIRST_USE,
        )
        assert AuditEntry.objects.filter(app=hello, action="git.host_keys").exists()
        _fetch(hello, sha)  # the pinned key, checked strictly
    # The same address now answers with another key (a new server, or a man in the middle).
    with run_sshd(tmp_path / "sshd", host_key=keys["host_b"], client_key=keys["client"],
                  port=a.port):  # fmt: skip
        with pytest.raises(HostKeyRefused) as refused:
            _fetch(hello, sha)
        message = refused.value.message
        assert "the ssh host key of 127.0.0.1 is not the key it presented at the first fetch" in (
            message
        )
        assert "ssh-keyscan 127.0.0.1" in message and "Deploy with git" in message
        assert git_settings_of(app=hello).ssh_host_keys == public_key(keys["host_a"])
        assert list((tmp_path / "builds").iterdir()) == []  # scratch (and key) gone
        # The operator checked the new key and pastes ssh-keyscan's line.
        scanned = f"[127.0.0.1]:{a.port} {public_key(keys['host_b'])}\n"
        git_settings_update(user=alice, app=hello, ssh_host_keys=scanned)
        _fetch(hello, sha)
        assert git_settings_of(app=hello).ssh_host_keys_origin == HostKeyOrigin.OPERATOR
        # Cleared: the next fetch trusts and pins what it sees again.
        git_settings_update(user=alice, app=hello, ssh_host_keys="")
        _fetch(hello, sha)
        row = git_settings_of(app=hello)
        assert (row.ssh_host_keys, row.ssh_host_keys_origin) == (
            public_key(keys["host_b"]),
            HostKeyOrigin.FIRST_USE,
        )


def test_a_key_set_by_the_operator_is_checked_from_the_first_fetch(
    alice: Any, hello: App, keys: dict[str, Path], served: tuple[Path, str], tmp_path: Path
) -> None:
    bare, sha = served
    with run_sshd(tmp_path / "sshd", host_key=keys["host_b"], client_key=keys["client"]) as b:
        _point_at(alice, hello, b, bare)
        git_settings_update(user=alice, app=hello, ssh_host_keys=public_key(keys["host_a"]))
        with pytest.raises(HostKeyRefused, match="is not the key\\(s\\) set on the app's"):
            _fetch(hello, sha)
        # Nothing was learnt from the refused server.
        assert git_settings_of(app=hello).ssh_host_keys == public_key(keys["host_a"])
        both = f"{public_key(keys['host_a'])}\n# the new one\n{public_key(keys['host_b'])}\n"
        git_settings_update(user=alice, app=hello, ssh_host_keys=both)
        _fetch(hello, sha)


def test_a_new_repository_url_forgets_keys_trusted_on_first_use_only(
    alice: Any, hello: App, keys: dict[str, Path]
) -> None:
    git_settings_update(user=alice, app=hello, repo_url="ssh://git@example.com/a.git")
    GitSettings.objects.filter(app=hello).update(
        ssh_host_keys=public_key(keys["host_a"]), ssh_host_keys_origin=HostKeyOrigin.FIRST_USE
    )
    git_settings_update(user=alice, app=hello, repo_url="ssh://git@example.org/a.git")
    assert git_settings_of(app=hello).ssh_host_keys == ""
    git_settings_update(user=alice, app=hello, ssh_host_keys=public_key(keys["host_a"]))
    git_settings_update(user=alice, app=hello, repo_url="ssh://git@example.net/a.git")
    assert git_settings_of(app=hello).ssh_host_keys == public_key(keys["host_a"])


def test_host_keys_are_validated_strictly(keys: dict[str, Path]) -> None:
    good = public_key(keys["host_a"])
    kind, blob = good.split()
    assert host_keys_validate(f"github.com {good} comment\n\n# x\n{good}\n") == [good]
    assert host_keys_validate("") == []
    bad = {
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP": "is not an ssh host key type",
        f"{kind} {blob[:-4]}!!!!": "is not valid base64",
        f"{kind}": "is not valid base64",
        f"ssh-rsa {blob}": "the ssh-rsa key is not valid base64 of a ssh-rsa key",
        f"@cert-authority * {good}": "@cert-authority lines are not accepted",
        "hello": "is not an ssh host key type",
    }
    for text, error in bad.items():
        with pytest.raises(ValidationFailed, match="Line 1: ") as refused:
            host_keys_validate(text)
        assert error in refused.value.message and refused.value.data == {"field": "ssh_host_keys"}


def test_the_page_saves_and_shows_the_keys(client: Any, alice: Any, hello: App,
                                           keys: dict[str, Path]) -> None:  # fmt: skip
    client.force_login(alice)
    page = client.post("/apps/hello/git/", {"form": "hostkeys", "ssh_host_keys": "nope x"},
                       follow=True)  # fmt: skip
    assert "is not an ssh host key type" in page.content.decode()
    good = public_key(keys["host_a"])
    page = client.post("/apps/hello/git/", {"form": "hostkeys", "ssh_host_keys": good},
                       follow=True)  # fmt: skip
    assert "Saved the ssh host keys." in page.content.decode() and good in page.content.decode()
    assert git_settings_of(app=hello).ssh_host_keys_origin == HostKeyOrigin.OPERATOR
