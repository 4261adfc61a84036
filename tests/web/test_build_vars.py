"""Build arguments and secrets per app, from the API and the app page:
arguments are shown, secrets never again once entered (names only), and a
real worker's build uses both with the secret in no stored log line."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.accounts.services import api_token_create
from paas.applications.services import app_create
from paas.builds.buildvars import build_secret_values
from paas.builds.models import Build, BuildSecret, BuildState
from tests.web.archives import targz
from tests.web.deploy_support import wait_build_final

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "pypi-T0ken-for-alice"


def put(client, raw, url, value):
    return client.put(
        url, json.dumps({"value": value}), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )  # fmt: skip


def test_the_api_sets_args_and_write_only_secrets(client, alice, bob):
    app = app_create(user=alice, team=alice.personal_team, name="vars")
    _, raw = api_token_create(user=alice, name="cli")
    assert put(client, raw, "/api/v1/apps/vars/build-args/GREETING", "hi").status_code == 200
    response = put(client, raw, "/api/v1/apps/vars/build-secrets/api_token", SECRET)
    assert response.status_code == 200
    assert SECRET not in response.content.decode()

    args = client.get("/api/v1/apps/vars/build-args", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert args.json() == {"build_args": {"GREETING": "hi"}}
    listing = client.get("/api/v1/apps/vars/build-secrets", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert [s["name"] for s in listing.json()["build_secrets"]] == ["api_token"]
    assert SECRET not in listing.content.decode()
    # Stored sealed, readable only by the build.
    assert SECRET not in BuildSecret.objects.get(app=app).sealed
    assert build_secret_values(app=app) == {"api_token": SECRET}

    bad = put(client, raw, "/api/v1/apps/vars/build-secrets/..%2Fetc", "x")
    assert bad.status_code in (400, 404)
    empty = put(client, raw, "/api/v1/apps/vars/build-secrets/other", "")
    assert empty.status_code == 400 and empty.json()["field"] == "value"
    _, bobs = api_token_create(user=bob, name="cli")
    assert put(client, bobs, "/api/v1/apps/vars/build-secrets/api_token", "x").status_code == 404
    deleted = client.delete(
        "/api/v1/apps/vars/build-secrets/api_token", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert deleted.status_code == 204
    assert build_secret_values(app=app) == {}


def test_a_viewer_cannot_set_a_secret(client, alice, carol_viewer_in_alices_team):
    app_create(user=alice, team=alice.personal_team, name="vars")
    _, raw = api_token_create(user=carol_viewer_in_alices_team, name="cli")
    response = put(client, raw, "/api/v1/apps/vars/build-secrets/api_token", SECRET)
    assert response.status_code == 403


def test_the_app_page_sets_them_and_shows_secret_names_only(client, alice):
    app_create(user=alice, team=alice.personal_team, name="vars")
    client.force_login(alice)
    url = "/apps/vars/build-settings"
    client.post(url, {"kind": "arg", "name": "GREETING", "value": "hello-page"})
    client.post(url, {"kind": "secret", "name": "api_token", "value": SECRET})
    page = client.get("/apps/vars/").content.decode()
    assert "GREETING" in page and "hello-page" in page
    assert "api_token" in page
    assert SECRET not in page
    refused = client.post(url, {"kind": "secret", "name": "bad/name", "value": "x"}, follow=True)
    assert "build secret name" in refused.content.decode()


def test_a_worker_build_uses_both_and_logs_no_secret(client, alice, workers):
    app = app_create(user=alice, team=alice.personal_team, name="vars")
    client.force_login(alice)
    client.post("/apps/vars/build-settings", {"kind": "arg", "name": "GREETING", "value": "hi"})
    client.post(
        "/apps/vars/build-settings", {"kind": "secret", "name": "api_token", "value": SECRET}
    )
    # A RUN no earlier session ran: the layer cache is shared across sessions.
    nonce = uuid.uuid4().hex.encode()
    dockerfile = (
        b"FROM stack\nARG GREETING\nRUN echo " + nonce + b' && echo "greeting=$GREETING" '
        b'&& cat /run/secrets/api_token && base64 /run/secrets/api_token\nCMD ["true"]\n'
    )
    workers.start()
    response = client.post(
        "/apps/vars/builds",
        {"source": SimpleUploadedFile("src.tar.gz", targz({"Dockerfile": dockerfile}))},
        HTTP_ACCEPT="application/json",
    )
    build = Build.objects.get(pk=response.json()["build"])
    wait_build_final(build)
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    assert build.state == BuildState.SUCCEEDED, log
    assert build.app == app
    assert "greeting=hi" in log
    assert SECRET not in log
    assert base64.b64encode(SECRET.encode()).decode() not in log


def test_an_index_password_never_reaches_the_stored_log(client, alice, workers, build_env):
    """PAAS_PIP_INDEX_URL with credentials, an index that refuses the
    connection (the build bridge's gateway, a closed port): pip fails
    naming the index, and no stored line shows the password."""
    subnet = build_env["PAAS_BUILD_SUBNET"]
    gateway = subnet.rsplit(".", 1)[0] + ".1"
    password = "ind3x-Pa55word"
    workers.env["PAAS_PIP_INDEX_URL"] = f"http://builder:{password}@{gateway}:9/simple/"
    app_create(user=alice, team=alice.personal_team, name="private-index")
    workers.start()
    client.force_login(alice)
    source = {
        "app.py": b"print('hi')\n",
        "requirements.txt": f"tinydep  # {uuid.uuid4()}\n".encode(),
    }
    response = client.post(
        "/apps/private-index/builds",
        {"source": SimpleUploadedFile("src.tar.gz", targz(source))},
        HTTP_ACCEPT="application/json",
    )
    build = Build.objects.get(pk=response.json()["build"])
    wait_build_final(build)
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    assert build.state == BuildState.FAILED, log
    assert f"Looking in indexes: http://builder:***@{gateway}:9/simple/" in log
    assert password not in log
    assert password not in build.error
