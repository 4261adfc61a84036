"""Metric points made by hand, for the compaction and JSON tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from paas.metrics.models import MetricPoint, Tier

# A moment on a 5-minute boundary, so bucket arithmetic reads plainly.
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def fine(app: Any, seconds: int, *, container: str = "web1", cpu: float | None = 10.0,
         memory: int = 1000, instance: str = "web.1") -> MetricPoint:  # fmt: skip
    time = T0 + timedelta(seconds=seconds)
    return MetricPoint.objects.create(
        app=app, container=container, instance=instance, release=1, tier=Tier.FINE,
        time=time, sampled_at=time, cpu_ns=seconds * 10**8, cpu_percent=cpu,
        memory_bytes=memory, memory_limit_bytes=64 * 2**20,
    )  # fmt: skip
