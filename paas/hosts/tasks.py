"""Celery entry points: take ids, call a service, nothing else. All are
idempotent and ack late, so a task redelivered after a worker died is safe."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from paas.applications import releases
from paas.core.errors import DATABASE_UNAVAILABLE
from paas.hosts import (
    app_delete,
    deploy,
    lifecycle,
    observe,
    reconcile,
    resume,
    router_push,
    services,
)
from paas.hosts.agent_client import AgentRefused, AgentUnreachable
from paas.hosts.models import Host, HostState

# A database restart or failover mid-task: run again, 1, 2, 4 ... 30 s later,
# PAAS_DEPLOY_DB_RETRIES times (about three minutes; the task is idempotent:
# it resumes). A longer outage leaves the release "deploying" with its lock
# free, which the deploy sweep resumes once the database answers again.
RETRY_ON_DATABASE: dict[str, Any] = {
    "autoretry_for": DATABASE_UNAVAILABLE,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": False,
    "max_retries": settings.PAAS_DEPLOY_DB_RETRIES,
}


@shared_task(name="deploy.release", acks_late=True, reject_on_worker_lost=True,
             **RETRY_ON_DATABASE)  # fmt: skip
def deploy_release(release_id: int) -> str:
    return str(deploy.release_deploy(release_id=release_id))


@shared_task(name="deploy.retire_old", acks_late=True, reject_on_worker_lost=True,
             **RETRY_ON_DATABASE)  # fmt: skip
def retire_old(app_id: int) -> int:
    return deploy.app_retire_old(app_id=app_id)


@shared_task(name="deploy.converge", acks_late=True, reject_on_worker_lost=True,
             **RETRY_ON_DATABASE)  # fmt: skip
def converge_app(app_id: int) -> None:
    deploy.app_converge(app_id=app_id)


@shared_task(name="deploy.reconcile", acks_late=True, reject_on_worker_lost=True)
def reconcile_all() -> dict[str, list[str]]:
    report = reconcile.reconcile()
    return {"started": report.started, "removed": report.removed, "errors": report.errors}


@shared_task(name="deploy.redrive")
def redrive_releases() -> dict[str, list[int]]:
    """Releases whose deploy task the broker lost (a Redis restart), and
    deploys whose worker died (paas/hosts/resume.py), sent again."""
    pending = releases.releases_redrive_pending()
    report = resume.deploys_resume_abandoned()
    return {"pending": pending, "redeployed": report.redeployed, "retiring": report.retiring}


@shared_task(name="deploy.observe")
def observe_all() -> dict[str, list[str]]:
    report = observe.hosts_observe()
    return {"changed": report.changed, "readmitted": report.readmitted, "errors": report.errors}


@shared_task(name="hosts.heartbeat")
def heartbeat() -> dict[str, Any]:
    states = services.hosts_heartbeat_all(reconcile_on_change=True)
    return {"states": states, "router_sources": router_push.hosts_router_sources_sync()}


# After a join the agent may not run yet: try for a few minutes, then the
# heartbeat's sync takes over.
@shared_task(name="hosts.push_router_sources", autoretry_for=(AgentUnreachable, AgentRefused),
             retry_backoff=2, retry_backoff_max=60, retry_jitter=False,
             max_retries=6)  # fmt: skip
def push_router_sources(host_id: int) -> list[str]:
    host = Host.objects.exclude(state=HostState.REMOVED).filter(pk=host_id).first()
    if host is None:
        return []
    return router_push.host_router_sources_push(host=host).in_effect


@shared_task(name="deploy.instance_action", acks_late=True, reject_on_worker_lost=True)
def instance_action_task(instance_id: int, action: str, signal: str, user_id: int) -> None:
    lifecycle.instance_action_by_id(
        instance_id=instance_id, action=action, signal=signal, user_id=user_id
    )


@shared_task(name="deploy.app_action", acks_late=True, reject_on_worker_lost=True)
def app_action_task(app_id: int, action: str, user_id: int) -> None:
    lifecycle.app_action_by_id(app_id=app_id, action=action, user_id=user_id)


@shared_task(name="deploy.app_delete", acks_late=True, reject_on_worker_lost=True)
def app_delete_task(app_id: int) -> bool:
    return app_delete.app_delete(app_id=app_id)


@shared_task(name="deploy.release_from_image", acks_late=True, reject_on_worker_lost=True)
def release_from_image(app_id: int, image: str, user_id: int) -> int | None:
    release = releases.release_image_by_id(app_id=app_id, image=image, user_id=user_id)
    return release.number if release else None
