"""The REST API is imported by the first request under /api/, not by the
first page (paas/urls_api.py, paas/core/api_urlconf.py): a web that serves
only the panel never pays for django-ninja and pydantic (~17 MiB), and the
API answers as before once asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A fresh process, as daphne's: its ASGI application, the panel's sign-in page (it reverses URLs,
# which imports every URLconf the root one includes), then the API.
PROBE = """
import json, sys
import paas.asgi  # daphne's application: Django set up, HTTP and WebSocket routes
from django.test import Client
client = Client()
seen = {"asgi": "ninja" in sys.modules}
seen["login"] = client.get("/login/").status_code
seen["after_page"] = "ninja" in sys.modules
seen["schema"] = client.get("/api/v1/openapi.json").status_code
seen["after_api"] = "ninja" in sys.modules
print(json.dumps(seen))
"""


def test_pages_do_not_import_the_api_and_the_first_api_request_does(tmp_path):
    env = {**os.environ, "PAAS_DATA_DIR": str(tmp_path), "SECRET_KEY": "probe",
           "DJANGO_SETTINGS_MODULE": "paas.settings", "ALLOWED_HOSTS": "testserver"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"asgi": False, "login": 200, "after_page": False, "schema": 200,
                    "after_api": True}  # fmt: skip


@pytest.mark.django_db
def test_an_unknown_api_path_answers_in_the_apis_shape_and_a_page_in_html(client):
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404
    assert api.json()["error"] == "not_found"
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_the_apis_docs_page_reverses_its_schema_url(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert b"/api/v1/openapi.json" in response.content


@pytest.mark.django_db(transaction=True)
async def test_daphnes_async_stack_takes_the_apis_urlconf_too(async_client):
    # ASGIHandler: the middleware's async path (daphne's), not the test
    # client's sync one.
    api = await async_client.get("/api/v1/no-such-thing")
    assert api.status_code == 404
    assert api.json()["error"] == "not_found"
    schema = await async_client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    page = await async_client.get("/login/")
    assert page.status_code == 200
