"""Reads: what the follower follows, a watcher's history, a download."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from paas.logs.filters import LogFilter
from paas.logs.lines import iso, row
from paas.logs.models import LogFollow, LogLine

ROW_COLUMNS = ("seq", "timestamp", "source", "process_type", "instance", "stream", "text")


@dataclass(frozen=True)
class FollowTarget:
    """One container log to follow: where it is and what its lines are."""

    app_id: int
    host_url: str
    token: str
    container_name: str
    process_type: str
    instance: str

    @property
    def key(self) -> str:
        return f"agent:{self.host_url}:{self.container_name}"


def containers_to_follow() -> list[FollowTarget]:
    """Every container the follower should read.

    Reads the LogFollow table that deploy fills; once Instance and Host
    exist, this becomes a query of running instances joined to their host's
    URL and token, and nothing else in the pipeline changes.
    """
    follows = LogFollow.objects.filter(active=True).order_by("id")
    return [
        FollowTarget(f.app_id, f.agent_url, f.agent_token, f.container, f.process_type, f.instance)
        for f in follows
    ]


def logs_recent(*, app_id: int, flt: LogFilter, limit: int) -> list[list[Any]]:
    """The newest ``limit`` matching lines as rows, in time order."""
    newest = flt.narrow(LogLine.objects.filter(app_id=app_id)).order_by("-seq")[:limit]
    rows = [row(*values) for values in newest.values_list(*ROW_COLUMNS)]
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def logs_lines_text(*, app_id: int, flt: LogFilter) -> Iterator[str]:
    """Every stored matching line, oldest first, as text lines for a download."""
    lines = flt.narrow(LogLine.objects.filter(app_id=app_id)).order_by("timestamp", "seq")
    for _seq, moment, source, _process, instance, _stream, text in lines.values_list(
        *ROW_COLUMNS
    ).iterator(chunk_size=2000):
        who = f"{source}[{instance}]" if instance else source
        yield f"{iso(moment)} {who}: {text}\n"
