"""The shapes a log line takes on its way: what producers hand to
``logs_ingest`` (:class:`IngestLine`), and the compact row the browser gets.

A row is a JSON array in the order of :data:`FIELDS`; a published batch
carries its rows already encoded as one JSON text, so a consumer without
filters forwards it without parsing or encoding anything per line (what
makes 50 watchers of a chatty app cheap).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from paas.core.errors import ValidationFailed
from paas.logs.models import LogSource

FIELDS = ("seq", "time", "source", "process", "instance", "stream", "text")
STREAMS = frozenset({"", "stdout", "stderr"})
SOURCES = frozenset(LogSource.values)  # (the enum's .values builds a new list on every call)
# Longer lines are cut (the agent cuts at 16 KiB too); a runaway line must
# not make one row or one frame huge.
MAX_TEXT = 16 * 1024


class IngestLine(NamedTuple):
    """One line for ``logs_ingest`` (a named tuple: the follower makes tens of
    thousands a second, and a frozen dataclass costs several times more)."""

    source: LogSource
    timestamp: datetime
    text: str
    stream: str = ""
    process_type: str = ""
    instance: str = ""
    container: str = ""

    def checked(self) -> IngestLine:
        """Refuse what would corrupt the log; cut what is merely too long."""
        if self.source not in SOURCES:
            raise ValidationFailed(f"unknown log source {self.source!r}", field="source")
        if self.timestamp.tzinfo is None:
            raise ValidationFailed("a log line's timestamp must carry a time zone")
        if self.stream not in STREAMS:
            raise ValidationFailed(f"unknown stream {self.stream!r}", field="stream")
        if len(self.process_type) > 30 or len(self.instance) > 63 or len(self.container) > 63:
            raise ValidationFailed("process type, instance or container name too long")
        if len(self.text) > MAX_TEXT or "\x00" in self.text:
            return self._replace(text=self.text[:MAX_TEXT].replace("\x00", "\ufffd"))
        return self


def iso(moment: datetime) -> str:
    """Fixed width and UTC, so the strings sort like the times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row(
    seq: int, moment: datetime, source: str, process: str, instance: str, stream: str, text: str
) -> list[Any]:
    return [seq, iso(moment), source, process, instance, stream, text]


def encode_rows(rows: list[list[Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
