"""The one error the CLI shows: a message a person can act on, and the
process's exit status (1 unless said otherwise)."""

from __future__ import annotations


class CliError(Exception):
    def __init__(self, message: str, *, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class StreamDropped(Exception):
    """A follow's connection could not be made or broke off: try again."""
