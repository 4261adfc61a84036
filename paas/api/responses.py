"""Which statuses an operation documents: its success and the error shapes."""

from __future__ import annotations

from typing import Any

from paas.api.schemas import Error

ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 409: Error}


def answers(status: int, schema: Any) -> dict[int, Any]:
    return {status: schema, **ERRORS}
