"""Deploys whose worker died, carried to an end.

A deploy task acks late, so Redis hands it to another worker when its
visibility timeout has passed: the task time limit plus a minute (31 min by
default), during which the release says "deploying" and its app can take no
other deploy. Worse, a worker killed just after the router switch never
sends the task that stops the old release's instances (deploy.retire_later):
nothing else would, so they ran for ever beside the new ones.

The app's deploy lock tells a dead deployer from a slow one. A deployer
holds it for the whole deploy and renews its short lease while it lives
(paas/hosts/locks.py); every way out of a deploy but death sets the
release's state before the lock is let go. So, with nobody holding the
app's lock:

- a release still "deploying" lost its deployer: its deploy task is sent
  again. Each deploy step is idempotent (paas/hosts/deploy.py), so the
  rerun picks up where the dead one stopped and either makes the release
  current (once: the promotion is a conditional update) or fails it, the
  previous release serving throughout;
- instances of retired or failed releases are leftovers of a deployer that
  died after the switch (or while removing them): the retire task is sent
  again, after the usual drain, counted from now, so after the switch.

A sweep that races a deployer finishing (it read "deploying", then the lock
was let go) sends a task that finds the release done and does nothing; the
same holds for the normal retire task it may double. The beat runs this
every PAAS_SWEEP_SECONDS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from paas.applications.models import Release, ReleaseState
from paas.hosts.locks import app_lock_held
from paas.hosts.models import HostState, Instance

log = logging.getLogger(__name__)


@dataclass
class ResumeReport:
    redeployed: list[int] = field(default_factory=list)  # release ids
    retiring: list[int] = field(default_factory=list)  # app ids


def deploys_resume_abandoned() -> ResumeReport:
    from paas.hosts.deploy import retire_later
    from paas.hosts.tasks import deploy_release

    report = ResumeReport()
    deploying = Release.objects.filter(state=ReleaseState.DEPLOYING).values_list("pk", "app_id")
    for release_id, app_id in deploying:
        if not app_lock_held(app_id):
            log.warning("re-driving the deploy of release %s: its worker stopped", release_id)
            deploy_release.delay(release_id)
            report.redeployed.append(release_id)
    # Hosts that do not answer keep such rows until they do (instance_remove):
    # the reconcile deals with those, not a retire sent every sweep.
    left_over = (
        Instance.objects.filter(
            release__state__in=[ReleaseState.RETIRED, ReleaseState.FAILED],
            host__state=HostState.READY,
        )
        .values_list("app_id", flat=True)
        .distinct()
    )
    for app_id in left_over:
        if not app_lock_held(app_id):
            log.warning("retiring the old instances of app %s: its deploy's worker stopped", app_id)
            retire_later(app_id=app_id)
            report.retiring.append(app_id)
    return report
