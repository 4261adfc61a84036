"""The build log over the API: `since` is a line number, and anything else
is a 400 that names it, never a 500."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from paas.accounts.services import api_token_create
from paas.applications.services import app_create
from paas.builds.models import Build
from tests.web.archives import HELLO, targz

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_build(client, alice):
    app_create(user=alice, team=alice.personal_team, name="logged")
    client.force_login(alice)
    source = SimpleUploadedFile("src.tar.gz", targz(HELLO), content_type="application/gzip")
    client.post("/apps/logged/builds", {"source": source})
    client.logout()
    return Build.objects.get()


@pytest.fixture
def auth(alice):
    return {"HTTP_AUTHORIZATION": f"Bearer {api_token_create(user=alice, name='cli')[1]}"}


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "0x10"])
def test_a_malformed_since_is_refused_naming_it(client, alices_build, auth, since):
    response = client.get(f"/api/v1/builds/{alices_build.pk}?since={since}", **auth)
    assert response.status_code == 400
    assert response.json()["field"] == "since"


def test_a_number_or_nothing_is_accepted(client, alices_build, auth):
    for query in ("", "?since=", "?since=0", "?since=12"):
        response = client.get(f"/api/v1/builds/{alices_build.pk}{query}", **auth)
        assert response.status_code == 200, query
        assert isinstance(response.json()["log"], list)
