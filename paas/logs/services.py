"""Runtime logs: storing lines, publishing them live, retention, and the
follow list deploy fills.

Storing and publishing are separate steps on purpose: the database is the
record, Channels (Redis pub/sub) only the live view, so a line is published
after the transaction that stored it commits, and a lost publication costs a
watcher nothing that a reconnect (history replay) does not give back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from paas.logs.lines import IngestLine, encode_rows, iso
from paas.logs.models import LogCounter, LogCursor, LogFollow, LogLine, LogSource
from runtime_agent.host.tls import parse_fingerprint

log = logging.getLogger(__name__)

LAYER = "logs"  # the Channels layer alias for log batches (pub/sub, see settings)


def app_logs_group(app_id: int) -> str:
    return f"app_{app_id}_logs"


@dataclass(frozen=True)
class StoredBatch:
    """Lines of one app as stored: what is published to its watchers."""

    app_id: int
    first_seq: int
    last_seq: int
    rows_json: str  # JSON array of rows (paas.logs.lines.FIELDS)

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    def message(self) -> dict[str, Any]:
        return {
            "type": "logs.batch",
            "first": self.first_seq,
            "last": self.last_seq,
            "rows": self.rows_json,
            "sent_at": time.time(),  # lets a watcher that is behind skip, see consumers.py
        }


# --- storing -------------------------------------------------------------------


COLUMNS = ("app_id", "seq", "source", "process_type", "instance", "container", "stream",
           "timestamp", "text")  # fmt: skip


def _insert_sql() -> str:
    table = connection.ops.quote_name(LogLine._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in COLUMNS)
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"


def _store_app_lines(app_id: int, lines: list[IngestLine]) -> StoredBatch:
    """Number and insert one app's lines; the caller holds the transaction.

    A plain ``executemany`` rather than ``bulk_create``: the ORM's per-field
    preparation cost ~60 us a line, the follower's whole budget at 20k lines/s.
    """
    checked = sorted((ln.checked() for ln in lines), key=lambda ln: ln.timestamp)
    counter, _ = LogCounter.objects.select_for_update().get_or_create(app_id=app_id)
    first = counter.last_seq + 1
    counter.last_seq += len(checked)
    counter.save(update_fields=["last_seq"])
    # Lines of one read share a timestamp: convert each distinct one once.
    moments = {ln.timestamp for ln in checked}
    adapted = {m: connection.ops.adapt_datetimefield_value(m) for m in moments}
    shown = {m: iso(m) for m in moments}
    with connection.cursor() as cursor:
        cursor.executemany(
            _insert_sql(),
            [
                (app_id, first + i, ln.source, ln.process_type, ln.instance, ln.container,
                 ln.stream, adapted[ln.timestamp], ln.text)
                for i, ln in enumerate(checked)
            ],
        )  # fmt: skip
    rows = [
        [first + i, shown[ln.timestamp], ln.source, ln.process_type, ln.instance, ln.stream,
         ln.text]
        for i, ln in enumerate(checked)
    ]  # fmt: skip
    return StoredBatch(app_id, first, counter.last_seq, encode_rows(rows))


def logs_store(
    *, lines_by_app: dict[int, list[IngestLine]], cursors: dict[str, dict[str, Any]] | None = None
) -> list[StoredBatch]:
    """Store lines of several apps and move the follower's cursors, in one
    transaction: either the lines and the positions they came from are both
    recorded, or neither is (a restarted follower then neither loses nor
    repeats a line). Publishing is the caller's business."""
    with transaction.atomic():
        batches = [
            _store_app_lines(app_id, lines) for app_id, lines in lines_by_app.items() if lines
        ]
        if cursors:
            # One upsert for all sources: an update_or_create each (two
            # queries and the ORM's work) was 40% of the follower's CPU with
            # 50 containers in every batch.
            LogCursor.objects.bulk_create(
                [LogCursor(key=key, position=position) for key, position in cursors.items()],
                update_conflicts=True,
                unique_fields=["key"],
                update_fields=["position", "updated_at"],
            )
    return batches


def logs_ingest(*, app_id: int, lines: list[IngestLine]) -> StoredBatch | None:
    """Store one app's lines and publish them to its watchers once committed.

    For producers inside the control plane (deploy's platform lines, the
    builder); the follower uses :func:`logs_store` and publishes itself.
    """
    if not lines:
        return None
    (batch,) = logs_store(lines_by_app={app_id: lines})
    transaction.on_commit(lambda: logs_publish(batch))
    return batch


def logs_platform_say(
    *, app_id: int, text: str, process_type: str = "", instance: str = ""
) -> StoredBatch | None:
    """A ``platform`` line in the app's log, stamped now (e.g. deploy's
    "Starting web.1 from v3"), published once the transaction commits."""
    line = IngestLine(
        source=LogSource.PLATFORM, timestamp=timezone.now(), text=text,
        process_type=process_type, instance=instance,
    )  # fmt: skip
    return logs_ingest(app_id=app_id, lines=[line])


def logs_publish(batch: StoredBatch) -> None:
    """Best effort, like every live event: the database has the lines."""
    layer = get_channel_layer(LAYER)
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(app_logs_group(batch.app_id), batch.message())
    except Exception:
        log.exception("could not publish %d log lines of app %s", batch.count, batch.app_id)


async def logs_publish_async(layer: Any, batch: StoredBatch) -> Exception | None:
    """Best effort too; returns the failure for the caller to report (the
    follower says so once per outage, not once per batch)."""
    try:
        await layer.group_send(app_logs_group(batch.app_id), batch.message())
    except Exception as exc:
        return exc
    return None


def log_cursor_position(*, key: str) -> dict[str, Any]:
    found = LogCursor.objects.filter(key=key).values_list("position", flat=True).first()
    return dict(found) if isinstance(found, dict) else {}


# --- retention -------------------------------------------------------------------


def logs_enforce_retention() -> int:
    """Delete lines beyond PAAS_LOG_RETENTION_LINES per app and older than
    PAAS_LOG_RETENTION_DAYS (0 turns either off). Returns how many went."""
    removed = 0
    days = settings.PAAS_LOG_RETENTION_DAYS
    if days:
        cutoff = timezone.now() - timedelta(days=days)
        removed += LogLine.objects.filter(timestamp__lt=cutoff).delete()[0]
    keep = settings.PAAS_LOG_RETENTION_LINES
    if keep:
        for app_id, last_seq in LogCounter.objects.values_list("app_id", "last_seq"):
            if last_seq > keep:
                old = LogLine.objects.filter(app_id=app_id, seq__lte=last_seq - keep)
                removed += old.delete()[0]
    if removed:
        log.info("log retention removed %d lines", removed)
    return removed


# --- what to follow ----------------------------------------------------------------


def log_follow_register(
    *, app_id: int, agent_url: str, agent_token: str, agent_fingerprint: str, container: str,
    process_type: str, instance: str,
) -> LogFollow:  # fmt: skip
    """Have the follower read ``container``'s log on that agent (idempotent);
    ``agent_fingerprint`` is the agent's certificate, pinned like a host's."""
    follow, _ = LogFollow.objects.update_or_create(
        agent_url=agent_url.rstrip("/"),
        container=container,
        defaults={
            "app_id": app_id, "agent_token": agent_token,
            "agent_fingerprint": parse_fingerprint(agent_fingerprint),
            "process_type": process_type, "instance": instance, "active": True,
        },
    )  # fmt: skip
    return follow


def log_follow_retire(*, agent_url: str, containers: Iterable[str]) -> int:
    """Stop following these containers (their stored lines stay)."""
    return LogFollow.objects.filter(
        agent_url=agent_url.rstrip("/"), container__in=list(containers)
    ).update(active=False)
