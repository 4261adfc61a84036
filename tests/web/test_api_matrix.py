"""Every app-scoped endpoint, three ways: bob (another team) gets 404 and
changes nothing, carol (a viewer in alice's team) may read but not write
(403, like the UI), alice gets what she asked for. The matrix must name
every operation in the schema that takes an app or a build, so a new
endpoint without a team check fails here."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.api.api import api
from paas.applications.models import App, AuditEntry, ConfigVar, RegistryCredential, Release
from paas.builds.models import Build, BuildArg, BuildSecret
from paas.router.models import Domain
from tests.support.certs import self_signed
from tests.web.api_support import auth, make_world
from tests.web.archives import HELLO, targz

pytestmark = pytest.mark.django_db

UPLOAD = object()  # the body of an upload: a fresh multipart archive
PEM = self_signed("alices-app.example.com")

READS = [
    ("GET", "/apps/{app}"),
    ("GET", "/apps/{app}/builds"),
    ("GET", "/builds/{build}"),
    ("GET", "/apps/{app}/build-args"),
    ("GET", "/apps/{app}/build-secrets"),
    ("GET", "/apps/{app}/releases"),
    ("GET", "/apps/{app}/config"),
    ("GET", "/apps/{app}/formation"),
    ("GET", "/apps/{app}/instances"),
    ("GET", "/apps/{app}/audit"),
    ("GET", "/apps/{app}/domains"),
    ("GET", "/apps/{app}/logs"),
    ("GET", "/apps/{app}/logs/stream"),
    ("GET", "/apps/{app}/registry-credentials"),
]
# (method, path, body, alice's status), in an order alice can follow.
WRITES: list[tuple[str, str, Any, int]] = [
    ("POST", "/apps/{app}/builds", UPLOAD, 201),
    ("POST", "/builds/{build}/cancel", None, 200),
    ("PUT", "/apps/{app}/build-args/GREETING", {"value": "yo"}, 200),
    ("PUT", "/apps/{app}/build-secrets/npm_token", {"value": "x"}, 200),
    ("POST", "/apps/{app}/releases", {"image": "{registry}/{app}:v1"}, 202),
    ("POST", "/apps/{app}/releases/1/rollback", {}, 201),
    ("POST", "/apps/{app}/config", {"set": {"A": "b"}}, 200),
    ("PUT", "/apps/{app}/registry-credentials/r.example",
     {"username": "u", "password": "p"}, 200),
    ("DELETE", "/apps/{app}/registry-credentials/r.example", None, 204),
    ("POST", "/apps/{app}/formation/web", {"count": 2}, 202),
    ("POST", "/apps/{app}/instances/{instance}/restart", None, 202),
    ("POST", "/apps/{app}/actions/restart", None, 202),
    ("POST", "/apps/{app}/run", {"command": "true"}, 409),  # no host: nothing fits
    ("POST", "/apps/{app}/domains", {"hostname": "www.example.org"}, 201),
    ("PUT", "/apps/{app}/domains/{domain}/certificate",
     {"certificate": PEM.cert, "key": PEM.key}, 200),
    ("DELETE", "/apps/{app}/domains/{domain}/certificate", None, 200),
    ("DELETE", "/apps/{app}/build-args/GREETING", None, 204),
    ("DELETE", "/apps/{app}/build-secrets/npm_token", None, 204),
    ("DELETE", "/apps/{app}/domains/{domain}", None, 204),
    ("POST", "/apps/{app}/delete", {"confirm": "{app}"}, 202),
    ("DELETE", "/apps/{app}?confirm={app}", None, 202),
]  # fmt: skip


def _fill(text: str, world: Any) -> str:
    return text.format(
        app=world.app.name, build=world.build.pk, instance=world.instance.container_name,
        domain=f"{world.app.name}.example.com", registry=settings.PAAS_REGISTRY,
    )  # fmt: skip


def _call(client: Any, user: Any, method: str, path: str, body: Any, world: Any) -> Any:
    url = "/api/v1" + _fill(path, world)
    headers = auth(user)
    if body is UPLOAD:
        source = SimpleUploadedFile("src.tar.gz", targz(HELLO), content_type="application/gzip")
        return client.post(url, {"source": source}, **headers)
    if isinstance(body, dict):
        body = {k: _fill(v, world) if isinstance(v, str) else v for k, v in body.items()}
    response = client.generic(method, url, b"" if body is None else _json(body),
                              content_type="application/json", **headers)  # fmt: skip
    if response.streaming:  # a log follow: read to its end (PAAS_LOG_STREAM_MAX_S)
        b"".join(response.streaming_content)
    return response


def _json(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()


def _snapshot() -> dict[str, int]:
    return {model.__name__: model.objects.count()
            for model in (App, Build, BuildArg, BuildSecret, ConfigVar, Domain, Release,
                          AuditEntry, RegistryCredential)}  # fmt: skip


@pytest.fixture
def world(client, alice):
    return make_world(client, alice)


def test_the_matrix_names_every_operation_on_an_app_or_a_build():
    schema = api.get_openapi_schema(path_prefix="")
    scoped = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
        for path, operations in schema["paths"].items()
        for method in operations
        if "{name}" in path or "{build_id}" in path
    }
    named = {
        (method, re.sub(r"\{[^}]+\}", "{}", path.split("?")[0]).replace("/GREETING", "/{}")
         .replace("/npm_token", "/{}").replace("/r.example", "/{}").replace("/1/", "/{}/")
         .replace("/web", "/{}").replace("/restart", "/{}"))
        for method, path, *_ in READS + WRITES
    }  # fmt: skip
    assert scoped - named == set()


def test_bob_of_another_team_gets_404_everywhere_and_changes_nothing(client, bob, world):
    before = _snapshot()
    for method, path, *rest in READS + [(m, p, b) for m, p, b, _ in WRITES]:
        body = rest[0] if rest else None
        response = _call(client, bob, method, path, body, world)
        assert response.status_code == 404, (method, path, response.content)
        assert response.json()["error"] == "not_found"
    assert _snapshot() == before


def test_carol_the_viewer_reads_but_cannot_write(client, carol_viewer_in_alices_team, world):
    carol = carol_viewer_in_alices_team
    for method, path in READS:
        response = _call(client, carol, method, path, None, world)
        assert response.status_code == 200, (method, path, response.content)
    before = _snapshot()
    for method, path, body, _ in WRITES:
        response = _call(client, carol, method, path, body, world)
        assert response.status_code == 403, (method, path, response.content)
        assert response.json()["error"] == "forbidden"
    assert _snapshot() == before


def test_alice_gets_what_she_asks_for(client, alice, world):
    for method, path in READS:
        response = _call(client, alice, method, path, None, world)
        assert response.status_code == 200, (method, path, response.content)
    for method, path, body, status in WRITES:
        response = _call(client, alice, method, path, body, world)
        assert response.status_code == status, (method, path, response.content)
    assert not Domain.objects.filter(hostname="alices-app.example.com").exists()
    assert ConfigVar.objects.filter(app=world.app, key="A").exists()
