"""CPU and memory of every instance over time, at two resolutions.

The control plane reads every agent's cgroup counters (one request per host,
``GET /v1/stats``) every ``PAAS_METRICS_INTERVAL_S`` and stores one *fine*
point per running container; a compaction folds complete 5-minute buckets
of fine points into *coarse* ones. Fine points are kept for
``PAAS_METRICS_FINE_RETENTION_S`` (an hour), coarse ones for
``PAAS_METRICS_RETENTION_HOURS`` (a day): a day of an instance costs 288
coarse rows, not 8,640 fine ones.

Points belong to the app, not to an Instance row: instances come and go
with every deploy and scale, their history should not.
"""

from __future__ import annotations

from django.db import models

from paas.applications.models import App


class Tier(models.TextChoices):
    FINE = "fine", "Fine (one point per collection)"
    COARSE = "coarse", "Coarse (one point per 5 minutes)"


class MetricPoint(models.Model):
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="metric_points")
    container = models.CharField(max_length=63, help_text="the agent's container name")
    instance = models.CharField(max_length=63, help_text="e.g. web.1")
    release = models.PositiveIntegerField(help_text="the release number the container runs")
    tier = models.CharField(max_length=6, choices=Tier.choices)
    time = models.DateTimeField(help_text="the start of the point's time bucket")
    # The CPU counter (ns) as last read in the bucket, and when: the next
    # collection's CPU share is the difference over the time between them.
    cpu_ns = models.PositiveBigIntegerField()
    sampled_at = models.DateTimeField()
    cpu_percent = models.FloatField(
        null=True, help_text="mean share of one CPU over the bucket; none for a first sample"
    )
    memory_bytes = models.PositiveBigIntegerField(help_text="mean memory in use (as docker stats)")
    memory_limit_bytes = models.PositiveBigIntegerField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["container", "tier", "time"], name="one_metric_point_per_bucket"
            )
        ]
        indexes = [
            models.Index(fields=["app", "tier", "time"], name="metric_app_tier_time"),
            models.Index(fields=["tier", "time"], name="metric_tier_time"),
        ]

    def __str__(self) -> str:
        return f"{self.container} {self.tier} {self.time:%Y-%m-%dT%H:%M:%S}"
