"""The control plane's error family: each carries a code and an HTTP status,
and the edges (views, consumers, tasks) turn it into a response or a failure."""

from __future__ import annotations

from typing import Any


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
