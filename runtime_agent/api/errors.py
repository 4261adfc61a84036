"""The daemon's side of errors: the API's own (authentication) and the HTTP
status each error of the toolkit's family answers with."""

from __future__ import annotations

from runtime_agent.host.errors import (
    Conflict,
    HostError,
    ImageNotFound,
    ImageNotSupported,
    InvalidRequest,
    NotFound,
    OutOfSpace,
    RegistryError,
    UnsafeArchive,
    UnsafePath,
)


class Unauthorized(HostError):
    """No bearer token was sent (the API answers 401 with WWW-Authenticate)."""

    code = "unauthorized"
    permanent = True


class Forbidden(HostError):
    """A token was sent, but not this agent's."""

    code = "forbidden"
    permanent = True


# Most specific first does not matter: the lookup walks each error's own MRO.
HTTP_STATUS: dict[type[HostError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    ImageNotFound: 404,
    Conflict: 409,
    UnsafeArchive: 422,
    UnsafePath: 422,
    ImageNotSupported: 422,
    RegistryError: 502,
    OutOfSpace: 507,  # Insufficient Storage
    HostError: 500,
}


def http_status(exc: HostError) -> int:
    """The status of the nearest class of ``exc`` that has one."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
