"""The build log sink: every line a build writes goes through here, so secret
values are masked in one place and nowhere else has to remember to."""

from __future__ import annotations

from collections.abc import Callable, Iterable

MASK = "***"
# Very short values would mask ordinary words ("1", "on"); they are not
# secrets anybody could recognise in a log anyway.
MIN_SECRET_LEN = 3


class RedactingLog:
    def __init__(self, sink: Callable[[str], None], secrets: Iterable[str] = ()) -> None:
        self._sink = sink
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted(
            {s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True
        )

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def __call__(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._sink(self.redact(line))

    def step(self, line: str) -> None:
        """A line of a step's own output, indented under the step's header."""
        self(f"       {line}")
