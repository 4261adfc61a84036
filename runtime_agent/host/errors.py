"""The host toolkit's error family: every failure carries a code, whether it
is permanent (retrying will not help) and the data a person needs to act.

Used by the builder and the agent alike, so nothing here knows HTTP: the
agent's API maps these classes to statuses (:mod:`runtime_agent.api.errors`).
"""

from __future__ import annotations

import errno
from typing import Any

# The errnos of a full disk (or a full quota): the operator's to fix, and
# told apart from other I/O failures wherever they are caught.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class HostError(Exception):
    """Base error of the toolkit and the agent daemon."""

    code = "agent_error"  # what the agent's API calls an error with no more specific code
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


class InvalidRequest(HostError):
    code = "invalid_request"
    permanent = True


class NotFound(HostError):
    code = "not_found"
    permanent = True


class Conflict(HostError):
    code = "conflict"
    permanent = True


class UnsafeArchive(HostError):
    """A layer or source archive tried to escape its directory or was too big."""

    code = "unsafe_archive"
    permanent = True


class UnsafePath(HostError):
    """A path in a tree a tenant shaped goes through a link or out of its
    directory: the host refuses to follow it (see safepath.py)."""

    code = "unsafe_path"
    permanent = True


class RegistryError(HostError):
    code = "registry_error"


class DigestMismatch(RegistryError):
    code = "digest_mismatch"
    permanent = True


class CommandFailed(HostError):
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


class OutOfSpace(HostError):
    """The host's disk is full: nothing was made, and the same request works
    once an operator frees space (not permanent)."""

    code = "out_of_space"


class NetworkError(HostError):
    code = "network_error"


class UnsafeRuntime(HostError):
    """The installed runc is vulnerable to a known container escape."""

    code = "unsafe_runtime"
    permanent = True


class ImageNotFound(RegistryError):
    """The registry has no such repository, tag or manifest."""

    code = "image_not_found"
    permanent = True


class MountFailed(HostError):
    """An overlay mount or unmount failed; carries errno and, when the kernel
    said more, its own message."""

    code = "mount_failed"


class ImageNotSupported(RegistryError):
    """A manifest, config or layer type the agent does not run (schema 1,
    zstd layers, foreign layers, another platform)."""

    code = "image_not_supported"
    permanent = True
