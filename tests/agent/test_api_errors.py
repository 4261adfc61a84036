"""The HTTP status each error of the toolkit's family answers with: the
mapping lives in the daemon's API, not on the errors (the builder uses them
too, and knows no HTTP)."""

from __future__ import annotations

import pytest

from runtime_agent.api.errors import Forbidden, Unauthorized, http_status
from runtime_agent.host import errors


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidRequest, 400),
        (Unauthorized, 401),
        (Forbidden, 403),
        (errors.NotFound, 404),
        (errors.ImageNotFound, 404),
        (errors.Conflict, 409),
        (errors.UnsafeArchive, 422),
        (errors.ImageNotSupported, 422),
        (errors.RegistryError, 502),
        (errors.DigestMismatch, 502),
        (errors.CommandFailed, 500),
        (errors.NetworkError, 500),
        (errors.MountFailed, 500),
        (errors.UnsafeRuntime, 500),
        (errors.HostError, 500),
    ],
)
def test_each_error_answers_with_its_status(error, status):
    exc = errors.CommandFailed(["x"], 1, "") if error is errors.CommandFailed else error("m")
    assert http_status(exc) == status


def test_a_toolkit_error_has_no_http_status_of_its_own():
    assert not hasattr(errors.NotFound("gone"), "status")
