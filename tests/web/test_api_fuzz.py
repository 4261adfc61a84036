"""Schemathesis against the served schema, in-process through the WSGI
app: generated (valid and invalid) requests to every operation find no 5xx,
and every answer is one the schema documents, in the shape it documents.

Each operation runs twice: with everything generated (mostly unknown names:
404s), and with the path pinned to alice's real app and build, so bodies
and queries reach the services. alice is an admin, so hosts are reached too.
Bounded (a few examples per operation, no shrinking, derandomized) to stay
well under two minutes on a loaded machine."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from paas.accounts.services import api_token_create
from tests.web.api_support import make_world

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 5
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def _run(
    operation: Any, alice: Any, pinned: dict[str, str], mode: Any, statuses: Counter[int]
) -> list[str]:
    failures: list[str] = []
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned or None)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy)
    def check(case: Any) -> None:
        # A fresh token each time: a generated DELETE /tokens/{id} may revoke one.
        token = api_token_create(user=alice, name="fuzz")[1]
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:
            failures.append(f"{case.method} {case.formatted_path}: {exc}"[:2000])

    check()
    return failures


def _pins(operation: Any, world: Any) -> dict[str, str]:
    names = {p.name for p in operation.path_parameters}
    pins = {"name": world.app.name, "build_id": str(world.build.pk),
            "instance": world.instance.container_name, "host": world.host.name}  # fmt: skip
    return {k: v for k, v in pins.items() if k in names}


def test_generated_requests_find_no_server_error(client, alice):
    alice.is_staff = True
    alice.save()
    world = make_world(client, alice)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > 30
    for operation in operations:
        for mode in MODES:
            failures += _run(operation, alice, {}, mode, statuses)
            pins = _pins(operation, world)
            if pins:
                failures += _run(operation, alice, pins, mode, statuses)
    assert failures == []
    # It reached the services, not only the validation and the 404s.
    assert sum(n for status, n in statuses.items() if status < 300) > 50, statuses
