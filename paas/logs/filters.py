"""What a watcher asked to see: process type, instance, source and a text
to search for. The same filter narrows the replayed history (as a query)
and the live lines (in memory)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import QuerySet

from paas.core.errors import ValidationFailed
from paas.logs.models import LogLine, LogSource

MAX_QUERY = 200


@dataclass(frozen=True)
class LogFilter:
    process: str = ""
    instance: str = ""
    source: str = ""
    q: str = ""

    @classmethod
    def parse(cls, data: Any) -> LogFilter:
        """From query parameters or a client's message; bad input is refused, not guessed."""
        if not hasattr(data, "get"):
            raise ValidationFailed("a filter must be an object")
        values = {}
        for name, limit in (("process", 30), ("instance", 63), ("source", 10), ("q", MAX_QUERY)):
            value = data.get(name) or ""
            if not isinstance(value, str):
                raise ValidationFailed(f"{name} must be a string", field=name)
            if len(value) > limit:
                raise ValidationFailed(f"{name} is longer than {limit} characters", field=name)
            values[name] = value.strip() if name != "q" else value
        if values["source"] and values["source"] not in LogSource.values:
            choices = ", ".join(LogSource.values)
            raise ValidationFailed(f"source must be one of {choices}", field="source")
        return cls(**values)

    @property
    def is_empty(self) -> bool:
        return not (self.process or self.instance or self.source or self.q)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def narrow(self, lines: QuerySet[LogLine]) -> QuerySet[LogLine]:
        if self.process:
            lines = lines.filter(process_type=self.process)
        if self.instance:
            lines = lines.filter(instance=self.instance)
        if self.source:
            lines = lines.filter(source=self.source)
        if self.q:
            lines = lines.filter(text__icontains=self.q)
        return lines

    def matches(self, row: list[Any]) -> bool:
        """``row`` as in :data:`paas.logs.lines.FIELDS`."""
        _, _, source, process, instance, _, text = row
        return (
            (not self.process or process == self.process)
            and (not self.instance or instance == self.instance)
            and (not self.source or source == self.source)
            and (not self.q or self.q.casefold() in text.casefold())
        )
