"""The builder's errors: one exception a build ends with, carrying what a person
needs to fix it (the step, the command, its exit code)."""

from __future__ import annotations

from typing import Any


class BuildFailed(Exception):
    """A build could not finish. ``step`` names the failing step (``"detect"``,
    ``"RUN pip install x"``, ``"install dependencies"``...), ``command`` is what
    ran (empty when nothing ran) and ``exit_code`` its status (``None`` when the
    failure was not a command's, e.g. an unsupported Dockerfile instruction)."""

    def __init__(
        self,
        message: str,
        *,
        step: str,
        command: str = "",
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.command = command
        self.exit_code = exit_code

    def __str__(self) -> str:
        where = f"step {self.step!r}"
        if self.command:
            where += f", command {self.command!r}"
        if self.exit_code is not None:
            where += f", exit code {self.exit_code}"
        return f"{self.message} ({where})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "step": self.step,
            "command": self.command,
            "exit_code": self.exit_code,
        }


class BuildCancelled(BuildFailed):
    """Someone cancelled the build: its step was killed and whatever it had
    made is removed like after any failure."""

    def __init__(self, *, step: str) -> None:
        super().__init__("the build was cancelled", step=step)
