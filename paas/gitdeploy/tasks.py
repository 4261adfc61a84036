"""Celery entry points: take ids, call a service, nothing else."""

from __future__ import annotations

from celery import shared_task

from paas.gitdeploy import webhooks


@shared_task(name="gitdeploy.webhook_deploy", acks_late=True, reject_on_worker_lost=True)
def webhook_deploy(delivery_id: int) -> None:
    webhooks.webhook_deploy(delivery_id=delivery_id)
