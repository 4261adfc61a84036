"""The OpenAPI schema is served without a token and is a valid OpenAPI 3
document; the docs page loads only the platform's own assets."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.staticfiles import finders
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


def test_the_schema_is_served_and_valid(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    validate(schema)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/apps/{name}/logs" in schema["paths"]
    bearer = schema["components"]["securitySchemes"]
    assert [s["scheme"] for s in bearer.values()] == ["bearer"]


def test_every_operation_documents_its_errors_and_an_id(client):
    schema = client.get("/api/v1/openapi.json").json()
    ids = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            assert {"400", "404"} <= set(operation["responses"]), (method, path)
            error = operation["responses"]["404"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}
    assert len(ids) == len(set(ids))


def test_the_docs_page_loads_nothing_from_elsewhere(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, page
    assert all(s.startswith("/static/") for s in sources), sources
    for source in sources:
        assert finders.find(source.removeprefix("/static/")), source
    found = re.search(r'id="swagger-settings">(.*?)</script>', page, re.S)
    assert found, page
    settings = json.loads(found[1])
    assert settings["url"] == "/api/v1/openapi.json"
    assert settings["validatorUrl"] is None  # Swagger would call an online validator


def test_every_paged_list_documents_limit_and_offset(client):
    schema = client.get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    paged = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if not get:
            continue
        content = get["responses"]["200"]["content"]
        if "application/json" not in content:
            assert set(content) == {"text/event-stream"}, path  # the log follow
            continue
        ref = content["application/json"]["schema"]["$ref"]
        body = components[ref.rsplit("/", 1)[1]]
        if "next_offset" in body["properties"]:
            paged.append(path)
            names = {p["name"] for p in get.get("parameters", [])}
            assert {"limit", "offset"} <= names, path
    lists = ["apps", "builds", "releases", "instances", "audit", "domains"]
    assert sorted(paged) == sorted(
        ["/api/v1/apps", "/api/v1/tokens", "/api/v1/hosts"]
        + [f"/api/v1/apps/{{name}}/{what}" for what in lists[1:]]
    )
