"""Celery entry points: take ids, call a service, nothing else."""

from __future__ import annotations

from celery import shared_task

from paas.applications.releases import release_create_from_build
from paas.builds import services


# Runs only in a free build slot (its own queue, paas/core/work_slots.py).
@shared_task(name="builds.run", acks_late=True, reject_on_worker_lost=True)
def run_build(build_id: str) -> None:
    services.build_run(build_id=build_id)
    # A successful build becomes a release, deployed when it commits (once,
    # even if this task runs twice).
    release_create_from_build(build_id=build_id)


@shared_task(name="builds.fail_abandoned")
def fail_abandoned_builds() -> int:
    services.builds_reap_leftovers()
    return services.builds_fail_abandoned()


@shared_task(name="builds.redrive")
def redrive_builds() -> list[str]:
    """Builds whose queued task the broker lost (a Redis restart), sent again."""
    return services.builds_redrive_queued()


@shared_task(name="builds.housekeep")
def housekeep_builds() -> str:
    """Keep the build cache, scratch dirs and registry within bounds."""
    from paas.builds.housekeeping import builds_housekeep

    return builds_housekeep().summary()
