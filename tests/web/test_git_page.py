"""The app's "Deploy with git" page: alice sets the deploy branch, the
repository and the webhook secret; bad URLs are refused with a message;
bob (another team) gets a 404 and carol (a viewer) cannot change anything."""

from __future__ import annotations

from typing import Any

import pytest

from paas.applications.models import App
from paas.applications.services import app_create
from paas.gitdeploy.models import GitSettings
from paas.gitdeploy.services import git_settings_of, webhook_secret_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def hello(alice: Any) -> App:
    return app_create(user=alice, team=alice.personal_team, name="hello")


def test_the_page_shows_the_remote_and_the_webhook_url(client: Any, alice: Any, hello: App) -> None:
    client.force_login(alice)
    page = client.get("/apps/hello/git/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "/git/hello.git" in text and "/hooks/git/hello" in text
    assert "git push paas main" in text


def test_alice_sets_the_branch_the_repository_and_a_made_secret(
    client: Any, alice: Any, hello: App
) -> None:
    client.force_login(alice)
    client.post("/apps/hello/git/", {"form": "branch", "deploy_branch": "production"})
    client.post("/apps/hello/git/", {"form": "repository",
                "repo_url": "https://git.example.com/alice/hello.git",
                "repo_credentials": "alice:token"})  # fmt: skip
    made = client.post("/apps/hello/git/", {"form": "webhook", "webhook_secret": ""})
    row = git_settings_of(app=hello)
    assert (row.deploy_branch, row.repo_url) == (
        "production",
        "https://git.example.com/alice/hello.git",
    )
    secret = webhook_secret_of(row=row)
    assert len(secret) >= 32 and secret in made.content.decode()
    assert "alice:token" not in row.repo_credentials_sealed
    # Shown once: the page never shows it again.
    assert secret not in client.get("/apps/hello/git/").content.decode()


def test_a_local_or_ext_url_is_refused_with_a_message(client: Any, alice: Any, hello: App) -> None:
    client.force_login(alice)
    for url in ("file:///etc", "ext::sh -c id", "/srv/repo.git"):
        page = client.post("/apps/hello/git/", {"form": "repository", "repo_url": url}, follow=True)
        assert (
            "local paths, file://, ext:: and other transports are refused" in page.content.decode()
        )
    assert not GitSettings.objects.filter(app=hello).exclude(repo_url="").exists()


def test_bob_gets_a_404_and_carol_cannot_change_anything(
    client: Any, bob: Any, carol_viewer_in_alices_team: Any, hello: App
) -> None:
    client.force_login(bob)
    assert client.get("/apps/hello/git/").status_code == 404
    assert (
        client.post("/apps/hello/git/", {"form": "branch", "deploy_branch": "x"}).status_code == 404
    )
    client.force_login(carol_viewer_in_alices_team)
    page = client.get("/apps/hello/git/")
    assert page.status_code == 200 and 'name="deploy_branch"' not in page.content.decode()
    client.post("/apps/hello/git/", {"form": "branch", "deploy_branch": "x"})
    assert git_settings_of(app=hello).deploy_branch == "main"
