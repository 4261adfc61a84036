"""Who may pull what, through real deploys: the agent holds no credential of
the platform's registry and pulls with the token each create brings, good
for the app's own repository only; an app deploys an image from another
real registry with the username and password its team stored, which reach
the worker and the pulling agent only, and are never shown or logged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas.accounts.services import api_token_create
from paas.applications.models import AuditEntry, AuditResult, Release, ReleaseState
from paas.applications.services import app_create
from paas.builds.registry_tokens import token_claims
from paas.hosts.models import Host
from paas.hosts.pull_auth import pull_auth
from paas.logs.models import LogLine
from runtime_agent.host.errors import RegistryError
from runtime_agent.images.registry import RegistryClient
from tests.support.agent_harness import AgentProcess
from tests.support.images import BuiltImage, build_busybox_image
from tests.support.registry import TestRegistry, run_registry
from tests.web.deploy_support import get, upload, wait_for, wait_release
from tests.web.test_deploy_e2e import platform  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

GOOD_PASSWORD = "ext-Pa55-word-7f3a"
WRONG_PASSWORD = "not-the-Pa55-word"


def _files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and "layers" not in path.parts:
            yield path


def _holds(root: Path, secret: bytes) -> list[Path]:
    found = []
    for path in _files_under(root):
        try:
            if secret in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def test_an_agent_without_credentials_pulls_its_apps_image_with_a_token_for_it_alone(
    client: Any, alice: Any, platform: int, agent: AgentProcess,  # noqa: F811
    registry: TestRegistry, tmp_path: Path, settings: Any,
) -> None:  # fmt: skip
    assert not any("REGISTRY_PASSWORD" in k or "REGISTRY_USER" in k for k in agent.extra_env)
    app_create(user=alice, team=alice.personal_team, name="hello")
    upload(client, alice, "hello")
    v1 = wait_release("hello", 1, timeout_s=600)
    assert v1.state == ReleaseState.CURRENT, v1.error
    assert get(platform, "hello.localhost") == (200, "Hello, world from hello-v1-web-1\n")
    # Nothing the agent keeps holds the token it pulled with.
    assert _holds(agent.root, b"eyJ0eXAiOiAiSldUIi") == []

    other = build_busybox_image(registry, tmp_path / "other", repository="other-app")
    auth = pull_auth(app=v1.app, image=v1.image, host=Host.objects.get(name="local"))
    assert auth is not None and auth.token and auth.password is None
    claims = token_claims(auth.token)
    assert claims["access"] == [{"type": "repository", "name": "hello", "actions": ["pull"]}]
    assert int(str(claims["exp"])) - int(str(claims["iat"])) == settings.PAAS_REGISTRY_TOKEN_TTL_S
    digest = v1.image.split("@", 1)[1]
    with RegistryClient(registry.host, token=auth.token, ca_file=str(registry.ca_file)) as reg:
        assert reg.get_manifest("hello", digest)[1] == digest
        with pytest.raises(RegistryError, match="refused"):
            reg.get_manifest("other-app", "v1")
        with pytest.raises(RegistryError, match="refused"):
            reg.fetch_blob("other-app", other.layers[1].digest, tmp_path / "stolen")


@pytest.fixture
def external(
    registry: TestRegistry, workers: Any, settings: Any, tmp_path: Path
) -> Iterator[tuple[TestRegistry, BuiltImage]]:
    """A second real registry on loopback, with htpasswd auth (the same TLS
    certificate as the platform's, so hosts trust it through one CA file),
    holding a busybox httpd image; the platform allows deploys from it."""
    assert registry.ca_file is not None
    cert_key = (registry.ca_file, registry.ca_file.with_name("key.pem"))
    with run_registry(
        tmp_path / "ext", username="bob", password=GOOD_PASSWORD, cert_key=cert_key
    ) as ext:
        image = build_busybox_image(ext, tmp_path / "img", repository="tools/web")
        settings.PAAS_DEPLOY_REGISTRIES = [ext.host]
        workers.env["PAAS_DEPLOY_REGISTRIES"] = ext.host  # before `platform` starts them
        yield ext, image


def _deploy(client: Any, token: str, image: str) -> None:
    response = client.post("/api/v1/apps/ext/releases", {"image": image},
                           content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip
    assert response.status_code == 202, response.content


def _set_credential(client: Any, token: str, registry: str, password: str) -> dict[str, Any]:
    response = client.put(f"/api/v1/apps/ext/registry-credentials/{registry}",
                          {"username": "bob", "password": password},
                          content_type="application/json",
                          HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_an_image_from_another_registry_deploys_with_the_apps_stored_credential(
    client: Any, alice: Any, external: tuple[TestRegistry, BuiltImage],
    platform: int, agent: AgentProcess, workers: Any, tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    ext, image = external
    app_create(user=alice, team=alice.personal_team, name="ext")
    _, token = api_token_create(user=alice, name="cli")

    assert _set_credential(client, token, ext.host, WRONG_PASSWORD) == {
        "registry": ext.host, "username": "bob",
    }  # fmt: skip
    _deploy(client, token, image.ref)
    refused = AuditEntry.objects.filter(action="release.image", result=AuditResult.FAILED)
    failed = wait_for(lambda: refused.first(), 120, "the refused image deploy")
    assert f"The registry {ext.host} refused access to tools/web" in failed.detail
    assert "user 'bob'" in failed.detail
    assert not Release.objects.filter(app__name="ext").exists()

    _set_credential(client, token, ext.host, GOOD_PASSWORD)
    listed = client.get("/api/v1/apps/ext/registry-credentials",
                        HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip
    assert [(c["registry"], c["username"]) for c in listed.json()["registry_credentials"]] == [
        (ext.host, "bob")
    ]
    assert GOOD_PASSWORD not in listed.content.decode()
    _deploy(client, token, image.ref)
    v1 = wait_release("ext", 1)
    assert v1.state == ReleaseState.CURRENT, v1.error
    assert v1.image == f"{ext.host}/tools/web@{image.digest}"
    assert get(platform, "ext.localhost") == (200, image.index_body)
    # The agent pulled from the external registry itself.
    assert ext.blob_gets("tools/web")

    # The password is nowhere to be read back: not in the audit log, the
    # app's log, the agent's files and logs, nor the worker's log.
    secret = GOOD_PASSWORD.encode()
    assert not any(GOOD_PASSWORD in e.detail for e in AuditEntry.objects.all())
    assert not LogLine.objects.filter(text__contains=GOOD_PASSWORD).exists()
    assert _holds(agent.root, secret) == []
    assert agent.stderr_path is None or secret not in agent.stderr_path.read_bytes()
    assert not [p for p in tmp_path.glob("worker-*.log") if secret in p.read_bytes()]


def test_only_allowed_registries_and_the_teams_own_apps_are_deployable(
    client: Any, alice: Any, bob: Any, registry: TestRegistry, settings: Any
) -> None:
    from paas.applications.releases import release_image_request
    from paas.core.errors import ValidationFailed

    settings.PAAS_REGISTRY = registry.host
    settings.PAAS_DEPLOY_REGISTRIES = ["ok.example:5000"]
    mine = app_create(user=alice, team=alice.personal_team, name="mine")
    app_create(user=bob, team=bob.personal_team, name="bobs")
    with pytest.raises(ValidationFailed, match="elsewhere.example is not one of them"):
        release_image_request(user=alice, app=mine, image="elsewhere.example/x:1")
    with pytest.raises(ValidationFailed, match="not an app of this team"):
        release_image_request(user=alice, app=mine, image=f"{registry.host}/bobs:v1")
    release_image_request(user=alice, app=mine, image="ok.example:5000/x:1")  # queued


def test_registry_credentials_are_validated_and_never_shown(
    client: Any, alice: Any, registry: TestRegistry, settings: Any
) -> None:
    settings.PAAS_REGISTRY = registry.host
    app_create(user=alice, team=alice.personal_team, name="ext")
    _, token = api_token_create(user=alice, name="cli")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}", "content_type": "application/json"}
    url = "/api/v1/apps/ext/registry-credentials/"
    own = client.put(url + registry.host, {"username": "u", "password": "p"}, **auth)
    assert own.status_code == 400 and "needs no credentials" in own.json()["message"]
    bad = client.put(url + "bad host", {"username": "u", "password": "p"}, **auth)
    assert bad.status_code in (400, 404)
    colon = client.put(url + "r.example", {"username": "u:x", "password": "p"}, **auth)
    assert colon.status_code == 400
    ok = client.put(url + "R.example:5000", {"username": "u", "password": "s3cr3t"}, **auth)
    assert ok.json() == {"registry": "r.example:5000", "username": "u"}
    assert "s3cr3t" not in client.get(url.rstrip("/"), **auth).content.decode()
    assert client.delete(url + "r.example:5000", **auth).status_code == 204
    assert client.delete(url + "r.example:5000", **auth).status_code == 404
