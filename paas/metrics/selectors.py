"""Reading an app's metric points as chart-ready series."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from paas.core.errors import ValidationFailed
from paas.metrics.models import MetricPoint, Tier


@dataclass(frozen=True)
class Span:
    name: str
    tier: Tier
    seconds: int


def spans() -> dict[str, Span]:
    return {
        "1h": Span("1h", Tier.FINE, min(3600, settings.PAAS_METRICS_FINE_RETENTION_S)),
        "24h": Span("24h", Tier.COARSE, 24 * 3600),
    }


def span_named(name: str) -> Span:
    known = spans()
    if name not in known:
        raise ValidationFailed(
            f"Unknown span {name!r}: use one of {', '.join(known)}.", field="span"
        )
    return known[name]


def metrics_series(*, app_id: int, span: Span, now: datetime | None = None) -> dict[str, Any]:
    """``times`` (unix seconds, ascending) and one series per container with
    a value or None at each time: the columns a chart library draws."""
    now = now or timezone.now()
    rows = (
        MetricPoint.objects.filter(
            app_id=app_id, tier=span.tier, time__gte=now - timedelta(seconds=span.seconds)
        )
        .order_by("time")
        .values_list("time", "container", "instance", "release", "cpu_percent", "memory_bytes",
                     "memory_limit_bytes")
    )  # fmt: skip
    times: list[int] = []
    by_container: dict[str, dict[str, Any]] = {}
    for time, container, instance, release, cpu, memory, limit in rows:
        stamp = int(time.timestamp())
        if not times or times[-1] != stamp:
            times.append(stamp)
        series = by_container.setdefault(
            container,
            {"label": f"{instance} (v{release})", "container": container, "values": {}},
        )
        series["values"][stamp] = (cpu, memory, limit)
    return {
        "span": span.name,
        "step_s": settings.PAAS_METRICS_INTERVAL_S
        if span.tier == Tier.FINE
        else settings.PAAS_METRICS_COARSE_S,
        "times": times,
        "series": [_columns(s, times) for s in by_container.values()],
    }


def _columns(series: dict[str, Any], times: list[int]) -> dict[str, Any]:
    values = series["values"]
    limits = [v[2] for v in values.values() if v[2] is not None]
    return {
        "label": series["label"],
        "container": series["container"],
        "cpu_percent": [values[t][0] if t in values else None for t in times],
        "memory_bytes": [values[t][1] if t in values else None for t in times],
        "memory_limit_bytes": max(limits) if limits else None,
    }


def memory_in_use(*, containers: list[str], now: datetime | None = None) -> dict[str, int]:
    """The memory each container used at its latest collection, for those
    sampled within the last three collection intervals (older samples are
    of a container that has stopped, or of a collector that is down)."""
    now = now or timezone.now()
    since = now - timedelta(seconds=3 * settings.PAAS_METRICS_INTERVAL_S)
    latest: dict[str, int] = {}
    points = (
        MetricPoint.objects.filter(tier=Tier.FINE, container__in=containers, sampled_at__gte=since)
        .order_by("sampled_at")
        .values_list("container", "memory_bytes")
    )
    for container, memory in points:
        latest[container] = memory
    return latest
