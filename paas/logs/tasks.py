"""Celery entry points for logs: take nothing or ids, call a service."""

from __future__ import annotations

from celery import shared_task

from paas.logs import services


@shared_task(name="logs.enforce_retention")
def enforce_retention() -> int:
    return services.logs_enforce_retention()
