"""How results are shown: plain tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def data(self, value: Any) -> bool:
        """Print ``value`` as JSON if asked; True if it was printed."""
        if self.as_json:
            print(json.dumps(value, indent=2, sort_keys=True))
        return self.as_json

    def say(self, text: str = "") -> None:
        if not self.as_json:
            print(text)

    def note(self, text: str) -> None:
        """Progress and remarks: stderr, so stdout stays the result."""
        print(text, file=sys.stderr, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
        if not rows:
            self.say(empty)
            return
        cells = [[str(c) for c in row] for row in rows]
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
        self.say("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
        for row in cells:
            self.say("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def progress_bar(done: int, total: int, width: int = 30) -> str:
    fraction = 1.0 if total <= 0 else min(1.0, done / total)
    filled = int(width * fraction)
    return (
        f"[{'#' * filled}{' ' * (width - filled)}] {fraction * 100:5.1f}% of {human_bytes(total)}"
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
