"""Celery entry points: take ids, call a service, nothing else."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from paas.applications.releases import release_create_from_build
from paas.builds import services
from paas.builds.slots import build_slot

# A build fetched just before the worker paused its builds queue (see
# paas/builds/slots.py) goes back to that queue for this long.
SLOTS_FULL_COUNTDOWN_S = 2.0


@shared_task(bind=True, name="builds.run", acks_late=True, reject_on_worker_lost=True)
def run_build(self: Any, build_id: str) -> None:
    with build_slot() as free:
        if not free:
            # Published again before this message is acked: nothing lost.
            raise self.retry(countdown=SLOTS_FULL_COUNTDOWN_S, max_retries=None)
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
