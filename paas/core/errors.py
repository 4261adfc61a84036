"""The control plane's error family: each carries a code and an HTTP status,
and the edges (views, consumers, tasks) turn it into a response or a failure."""

from __future__ import annotations

from typing import Any

from django.db import InterfaceError, OperationalError


class PaasError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.data}


class ValidationFailed(PaasError):
    code = "invalid"
    status = 400


class NotFound(PaasError):
    """Also used for objects of another team: a 404 never says whether it exists."""

    code = "not_found"
    status = 404


class PermissionDenied(PaasError):
    code = "forbidden"
    status = 403


class Conflict(PaasError):
    code = "conflict"
    status = 409


# The database went away (a restart, a failover, a dropped connection): not
# the fault of the work under way, and gone again in seconds. Tasks retry on
# these with a backoff instead of failing what they were doing; their next run
# gets a fresh connection (Celery's Django fixup closes unusable ones).
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
