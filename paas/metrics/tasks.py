"""Celery entry points for metrics: take nothing, call a service."""

from __future__ import annotations

from celery import shared_task

from paas.metrics import services


@shared_task(name="metrics.collect", ignore_result=True)
def collect() -> int:
    return services.metrics_collect()


@shared_task(name="metrics.compact", ignore_result=True)
def compact() -> tuple[int, int]:
    return services.metrics_compact()
