"""Reads: what the follower follows, a watcher's history, a download."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from paas.hosts.models import HostState, Instance, InstanceState
from paas.logs.filters import LogFilter
from paas.logs.lines import iso, row
from paas.logs.models import LogCounter, LogFollow, LogLine

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
    fingerprint: str  # the agent's pinned certificate (runtime_agent/host/tls.py)

    @property
    def key(self) -> str:
        return f"agent:{self.host_url}:{self.container_name}"


# Instances whose container exists on its agent, or is about to (pending: the
# follower asks until it appears; lines are never lost, the agent keeps them).
FOLLOWED_STATES = (
    InstanceState.PENDING, InstanceState.STARTING, InstanceState.RUNNING,
    InstanceState.CRASHED, InstanceState.BACKOFF, InstanceState.STOPPING,
)  # fmt: skip


def containers_to_follow() -> list[FollowTarget]:
    """Every container the follower should read: the instances deploy runs
    (on hosts not removed), plus any registered by hand in LogFollow."""
    instances = (
        Instance.objects.filter(state__in=FOLLOWED_STATES)
        .exclude(host__state=HostState.REMOVED)
        .select_related("host")
        .order_by("id")
    )
    targets = [
        FollowTarget(i.app_id, i.host.agent_url, i.host.token, i.container_name,
                     i.process_type, f"{i.process_type}.{i.index}", i.host.tls_fingerprint)
        for i in instances
    ]  # fmt: skip
    follows = LogFollow.objects.filter(active=True).order_by("id")
    targets += [
        FollowTarget(
            f.app_id,
            f.agent_url,
            f.agent_token,
            f.container,
            f.process_type,
            f.instance,
            f.agent_fingerprint,
        )
        for f in follows
    ]
    return targets


@dataclass(frozen=True)
class LogGap:
    """Matching lines after a cursor that a watcher has not had: the newest
    ``limit`` of them, how many older ones did not fit, and up to where the
    read covered (every line up to ``upto`` that matched is in ``rows``)."""

    rows: list[list[Any]]
    skipped: int
    upto: int


def logs_after(
    *, app_id: int, flt: LogFilter, after: int, upto: int | None = None, limit: int,
    count_skipped: bool = True,
) -> LogGap:  # fmt: skip
    """Matching lines with ``after < seq <= upto`` (``upto`` None: the newest
    stored), at most the newest ``limit``, in sequence order.

    The counter is read first: a line's number is given under the counter's
    row lock held until its commit, so every line up to the number read is
    committed and the query below sees it.
    """
    if upto is None:
        found = LogCounter.objects.filter(app_id=app_id).values_list("last_seq", flat=True)
        upto = found.first() or 0
    lines = flt.narrow(LogLine.objects.filter(app_id=app_id, seq__gt=after, seq__lte=upto))
    newest = list(lines.order_by("-seq")[: limit + 1].values_list(*ROW_COLUMNS))
    skipped = 0
    if len(newest) > limit and count_skipped:
        oldest_kept = newest[limit - 1][0] if limit else upto + 1
        skipped = lines.filter(seq__lt=oldest_kept).count()
    newest = newest[:limit]
    return LogGap([row(*values) for values in reversed(newest)], skipped, upto)


def logs_lines_text(*, app_id: int, flt: LogFilter) -> Iterator[str]:
    """Every stored matching line, oldest first, as text lines for a download."""
    lines = flt.narrow(LogLine.objects.filter(app_id=app_id)).order_by("timestamp", "seq")
    for _seq, moment, source, _process, instance, _stream, text in lines.values_list(
        *ROW_COLUMNS
    ).iterator(chunk_size=2000):
        who = f"{source}[{instance}]" if instance else source
        yield f"{iso(moment)} {who}: {text}\n"


@dataclass(frozen=True)
class LogPage:
    rows: list[list[Any]]
    next: int  # the cursor for the lines after these (what a poller sends back)
    next_before: int | None  # the cursor for older lines, if there are any


def logs_page(
    *, app_id: int, flt: LogFilter, limit: int, before: int | None = None, since: int | None = None
) -> LogPage:
    """A page of matching lines, oldest first, by sequence number: with
    ``since``, the oldest ``limit`` after it (what a poller asks for); else
    the newest ``limit`` (older than ``before`` if given)."""
    lines = flt.narrow(LogLine.objects.filter(app_id=app_id))
    if since is not None:
        chosen = list(lines.filter(seq__gt=since).order_by("seq")[:limit].values_list(*ROW_COLUMNS))
        older = False
    else:
        if before is not None:
            lines = lines.filter(seq__lt=before)
        chosen = list(lines.order_by("-seq")[: limit + 1].values_list(*ROW_COLUMNS))
        older = len(chosen) > limit
        chosen = chosen[:limit][::-1]
    rows = [row(*values) for values in chosen]
    if rows:
        last = rows[-1][0]
    elif since is not None:
        last = since
    else:  # nothing matches yet: follow from the app's newest line
        last = (
            LogLine.objects.filter(app_id=app_id)
            .order_by("-seq")
            .values_list("seq", flat=True)
            .first()
            or 0
        )
    return LogPage(rows, last, rows[0][0] if older and rows else None)
