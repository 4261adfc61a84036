"""One error family for the agent: every failure carries a code, whether it is
permanent (retrying will not help) and the data a person needs to act."""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    """Base error. ``status`` is the HTTP status the API answers with."""

    code = "agent_error"
    status = 500
    permanent = False

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": self.code,
            "message": self.message,
            "permanent": self.permanent,
            **self.data,
        }


class InvalidRequest(AgentError):
    code = "invalid_request"
    status = 400
    permanent = True


class NotFound(AgentError):
    code = "not_found"
    status = 404
    permanent = True


class Unauthorized(AgentError):
    """No bearer token was sent (the API answers 401 with WWW-Authenticate)."""

    code = "unauthorized"
    status = 401
    permanent = True


class Forbidden(AgentError):
    """A token was sent, but not this agent's."""

    code = "forbidden"
    status = 403
    permanent = True


class Conflict(AgentError):
    code = "conflict"
    status = 409
    permanent = True


class UnsafeArchive(AgentError):
    """A layer or source archive tried to escape its directory or was too big."""

    code = "unsafe_archive"
    status = 422
    permanent = True


class RegistryError(AgentError):
    code = "registry_error"
    status = 502


class DigestMismatch(RegistryError):
    code = "digest_mismatch"
    permanent = True


class CommandFailed(AgentError):
    """An external command (runc, mount, nft, ...) exited non-zero."""

    code = "command_failed"

    def __init__(
        self, argv: list[str], returncode: int, stderr: str, *, permanent: bool = False
    ) -> None:
        cmd = " ".join(argv)
        super().__init__(
            f"{cmd!r} failed with exit code {returncode}: {stderr.strip()[-2000:]}",
            argv=argv,
            returncode=returncode,
            stderr=stderr[-4000:],
        )
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        self.permanent = permanent


class NetworkError(AgentError):
    code = "network_error"


class UnsafeRuntime(AgentError):
    """The installed runc is vulnerable to a known container escape."""

    code = "unsafe_runtime"
    permanent = True


class ImageNotFound(RegistryError):
    """The registry has no such repository, tag or manifest."""

    code = "image_not_found"
    status = 404
    permanent = True


class MountFailed(AgentError):
    """An overlay mount or unmount failed; carries errno and, when the kernel
    said more, its own message."""

    code = "mount_failed"


class ImageNotSupported(RegistryError):
    """A manifest, config or layer type the agent does not run (schema 1,
    zstd layers, foreign layers, another platform)."""

    code = "image_not_supported"
    status = 422
    permanent = True
