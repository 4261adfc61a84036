"""Collecting, compacting and purging metric points (see models.py).

Everything here is safe to run twice or concurrently: a point's bucket is
unique per container and tier, and inserts ignore a bucket already stored,
so a retried or overlapping task adds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Max, Min
from django.utils import timezone

from paas.core.errors import PaasError
from paas.hosts.models import Host, HostState, Instance
from paas.hosts.services import host_client
from paas.metrics.models import MetricPoint, Tier
from runtime_agent import wire

log = logging.getLogger(__name__)

# An agent that takes longer than this to read its counters is skipped for
# this round rather than delaying every other host's.
COLLECT_TIMEOUT_S = 5.0
# A previous sample older than this many intervals is too far back to make
# a meaningful "now" of: the first point after a gap has no CPU share.
RATE_MAX_GAP_INTERVALS = 3
MAX_PARALLEL_HOSTS = 16


def bucket(moment: datetime, step_s: int) -> datetime:
    """The start of the ``step_s``-second bucket ``moment`` falls in."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step_s, tz=moment.tzinfo or UTC)


def metrics_collect(*, now: datetime | None = None) -> int:
    """One fine point per running container of every reachable host, from
    one request per host; returns how many points were stored."""
    now = now or timezone.now()
    hosts = list(Host.objects.filter(state__in=[HostState.READY, HostState.DRAINING]))
    if not hosts:
        return 0
    # Asked all at once: hosts that do not answer cost one timeout per
    # round, not one each. Only the requests run in threads; the database
    # is written from here.
    with ThreadPoolExecutor(max_workers=min(len(hosts), MAX_PARALLEL_HOSTS)) as pool:
        answers = list(pool.map(_host_stats, hosts))
    stored = 0
    for host, stats in zip(hosts, answers, strict=True):
        if stats is not None:
            stored += _store_host(host=host, stats=stats, now=now)
    return stored


def _host_stats(host: Host) -> dict[str, wire.Stats] | None:
    try:
        return host_client(host, timeout_s=COLLECT_TIMEOUT_S).all_stats()
    except PaasError as exc:
        log.info("metrics: host %s skipped this round: %s", host.name, exc)
    except (ValueError, KeyError, TypeError) as exc:
        # A malformed answer from one agent must not cost every other host its round.
        log.warning("metrics: host %s answered unreadable stats: %r", host.name, exc)
    return None


def _store_host(*, host: Host, stats: dict[str, wire.Stats], now: datetime) -> int:
    # Only containers the platform knows: anything else on the agent (a
    # build step, an operator's test) belongs to no app.
    instances = Instance.objects.filter(host=host, container_name__in=list(stats)).select_related(
        "release"
    )
    previous = _last_fine(names=[i.container_name for i in instances], now=now)
    time = bucket(now, settings.PAAS_METRICS_INTERVAL_S)
    points = []
    for inst in instances:
        sample = stats[inst.container_name]
        if sample.pids == 0:
            continue  # not running: the agent reports zeros, not a measurement
        points.append(
            MetricPoint(
                app_id=inst.app_id,
                container=inst.container_name,
                instance=f"{inst.process_type}.{inst.index}",
                release=inst.release.number,
                tier=Tier.FINE,
                time=time,
                cpu_ns=sample.cpu_usage_ns,
                sampled_at=now,
                cpu_percent=_cpu_percent(previous.get(inst.container_name), sample, now),
                memory_bytes=sample.memory_bytes,
                memory_limit_bytes=sample.memory_limit_bytes,
            )
        )
    MetricPoint.objects.bulk_create(points, ignore_conflicts=True)
    return len(points)


def _last_fine(*, names: list[str], now: datetime) -> dict[str, MetricPoint]:
    """Each container's newest recent fine point, in one query."""
    since = now - timedelta(seconds=RATE_MAX_GAP_INTERVALS * settings.PAAS_METRICS_INTERVAL_S)
    newest: dict[str, MetricPoint] = {}
    recent = MetricPoint.objects.filter(
        tier=Tier.FINE, container__in=names, time__gte=since, sampled_at__lt=now
    ).order_by("container", "-sampled_at")
    for point in recent:
        newest.setdefault(point.container, point)
    return newest


def _cpu_percent(prev: MetricPoint | None, sample: wire.Stats, now: datetime) -> float | None:
    """The share of one CPU used since ``prev`` (100 = one CPU busy)."""
    if prev is None or sample.cpu_usage_ns < prev.cpu_ns:
        return None  # a first sample, or the counter restarted (a new cgroup)
    elapsed_ns = (now - prev.sampled_at).total_seconds() * 1e9
    if elapsed_ns <= 0:
        return None
    return round((sample.cpu_usage_ns - prev.cpu_ns) / elapsed_ns * 100, 3)


@dataclass
class _Bucket:
    first: MetricPoint
    last: MetricPoint
    cpu: list[float]
    memory: list[int]


def metrics_compact(*, now: datetime | None = None) -> tuple[int, int]:
    """Fold complete coarse buckets of fine points into coarse points, then
    drop points past their retention. Returns (coarse points made, deleted)."""
    now = now or timezone.now()
    return metrics_downsample(now=now), metrics_purge(now=now)


def metrics_downsample(*, now: datetime) -> int:
    coarse = settings.PAAS_METRICS_COARSE_S
    # A bucket is complete once two collection intervals have passed its
    # end: a collection that started before the end (and waited on a slow
    # agent) has stored its points by then.
    end = bucket(now - timedelta(seconds=2 * settings.PAAS_METRICS_INTERVAL_S), coarse)
    # Every bucket after the newest folded one: a compaction that did not
    # run for a while (beat down) catches up before the purge drops points.
    newest = MetricPoint.objects.filter(tier=Tier.COARSE).aggregate(t=Max("time"))["t"]
    if newest is not None:
        start = newest + timedelta(seconds=coarse)
    else:
        start = MetricPoint.objects.filter(tier=Tier.FINE).aggregate(t=Min("time"))["t"] or end
    if start >= end:
        return 0
    fine = MetricPoint.objects.filter(tier=Tier.FINE, time__gte=start, time__lt=end).order_by(
        "sampled_at"
    )
    points = [_coarse_point(b, coarse) for b in _buckets(fine.iterator(), coarse).values()]
    MetricPoint.objects.bulk_create(points, ignore_conflicts=True)
    return len(points)


def _buckets(fine: Iterable[MetricPoint], coarse: int) -> dict[tuple[str, datetime], _Bucket]:
    out: dict[tuple[str, datetime], _Bucket] = {}
    for point in fine:
        key = (point.container, bucket(point.time, coarse))
        if key not in out:
            out[key] = _Bucket(first=point, last=point, cpu=[], memory=[])
        group = out[key]
        group.last = point
        group.memory.append(point.memory_bytes)
        if point.cpu_percent is not None:
            group.cpu.append(point.cpu_percent)
    return out


def _coarse_point(group: _Bucket, coarse: int) -> MetricPoint:
    last = group.last
    return MetricPoint(
        app_id=last.app_id,
        container=last.container,
        instance=last.instance,
        release=last.release,
        tier=Tier.COARSE,
        time=bucket(group.first.time, coarse),
        cpu_ns=last.cpu_ns,
        sampled_at=last.sampled_at,
        cpu_percent=round(sum(group.cpu) / len(group.cpu), 3) if group.cpu else None,
        memory_bytes=sum(group.memory) // len(group.memory),
        memory_limit_bytes=last.memory_limit_bytes,
    )


def metrics_purge(*, now: datetime) -> int:
    fine_cutoff = now - timedelta(seconds=settings.PAAS_METRICS_FINE_RETENTION_S)
    coarse_cutoff = now - timedelta(hours=settings.PAAS_METRICS_RETENTION_HOURS)
    deleted = 0
    for tier, cutoff in ((Tier.FINE, fine_cutoff), (Tier.COARSE, coarse_cutoff)):
        deleted += MetricPoint.objects.filter(tier=tier, time__lt=cutoff).delete()[0]
    return deleted
