"""Rolling a release out, and keeping an app at its formation.

A new release: place its instances, start them, wait until every web
instance passes its health check, then make the release current and switch
the router; the old instances stop after a drain period (another task, so no
worker sleeps). If any instance fails, the release is marked failed with the
reason, its instances are removed and the old release keeps serving: the
router was never touched.

Every step is idempotent (instance rows per slot, containers named after
the slot, the agent's create answering an existing container), so a task
delivered twice, or a worker that died half-way, leaves exactly the desired
containers after the next run.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from paas.applications.audit import audit_record
from paas.applications.models import (
    App,
    AuditResult,
    Formation,
    Release,
    ReleaseCause,
    ReleaseState,
)
from paas.applications.releases import release_image_deleted
from paas.core.errors import DATABASE_UNAVAILABLE, Conflict, PaasError
from paas.core.failpoints import failpoint
from paas.hosts.instances import (
    container_name,
    instance_ensure,
    instance_health_check,
    instance_remove,
)
from paas.hosts.live import deploy_progress, instance_changed, instances_changed, release_changed
from paas.hosts.locks import app_lock
from paas.hosts.models import DesiredState, Host, Instance
from paas.hosts.release_phase import RELEASE_PHASE, release_phase_run
from paas.hosts.routing import routes_apply
from paas.hosts.scheduler import schedule
from paas.hosts.upstreams import instance_create
from paas.router.services import router_lock

log = logging.getLogger(__name__)


def _place(release: Release, formation: Formation, indices: list[int]) -> list[Instance]:
    """Instance rows for the given slots; a slot that has one keeps it (and its host)."""
    existing = {
        i.index: i
        for i in Instance.objects.filter(release=release, process_type=formation.process_type)
    }
    missing = [n for n in indices if n not in existing]
    if missing:
        hosts = schedule(
            app_id=release.app_id,
            process_type=formation.process_type,
            memory_bytes=formation.memory_bytes,
            count=len(missing),
        )
        for index, host in zip(missing, hosts, strict=True):
            existing[index] = _create_instance(release, formation, index, host)
    return [
        Instance.objects.select_related("release", "host", "app").get(pk=existing[n].pk)
        for n in indices
    ]


def instances_place(
    *, release: Release, formation: Formation, indices: list[int]
) -> list[Instance]:
    """Instance rows (placed on hosts, not started) for the given slots."""
    return _place(release, formation, indices)


def _create_instance(release: Release, formation: Formation, index: int, host: Host) -> Instance:
    return instance_create(
        host=host,
        process_type=formation.process_type,
        app=release.app,
        release=release,
        index=index,
        container_name=container_name(
            release.app.name, release.number, formation.process_type, index
        ),
        memory_bytes=formation.memory_bytes,
        port=settings.PAAS_INSTANCE_PORT,
        tcp_port=formation.tcp_port,
    )


def _start_and_check(instances: list[Instance]) -> None:
    # All containers are created first, so they boot side by side.
    started = time.monotonic()
    for instance in instances:
        _progress(instance, "starting", f"starting {_slot(instance)} on {instance.host.name}")
        instance_ensure(instance)
    created = time.monotonic()
    for instance in instances:
        if instance.process_type == "web":
            _progress(instance, "health", f"health check of {_slot(instance)}")
            instance_health_check(instance)
            _progress(instance, "healthy", f"{_slot(instance)} is healthy")
    log.info(
        "%d instances created in %.0f ms, healthy %.0f ms later",
        len(instances), (created - started) * 1000, (time.monotonic() - created) * 1000,
    )  # fmt: skip


def _formation(app: App) -> list[Formation]:
    return [
        f
        for f in Formation.objects.filter(app=app)
        if f.count > 0 and f.process_type != RELEASE_PHASE
    ]


def release_deploy(*, release_id: int) -> ReleaseState:
    app_id = Release.objects.filter(pk=release_id).values_list("app_id", flat=True).first()
    if app_id is None:
        return ReleaseState.FAILED  # deleted (with its app) before the task ran
    with app_lock(app_id):
        return _release_deploy(release_id)


def _release_deploy(release_id: int) -> ReleaseState:
    release = Release.objects.select_related("app").filter(pk=release_id).first()
    if release is None:
        return ReleaseState.FAILED  # deleted (with its app) before the task ran
    if release.state not in (ReleaseState.PENDING, ReleaseState.DEPLOYING):
        return ReleaseState(release.state)  # done already: a repeated task
    newer = Release.objects.filter(app=release.app, number__gt=release.number).exclude(
        state=ReleaseState.FAILED
    )
    if newer.exists():
        Release.objects.filter(pk=release.pk).update(
            state=ReleaseState.RETIRED, error="superseded by a newer release before it ran"
        )
        release_changed(app_id=release.app_id)
        retire_later(app_id=release.app_id)
        return ReleaseState.RETIRED
    starting = Release.objects.filter(
        pk=release.pk, state__in=[ReleaseState.PENDING, ReleaseState.DEPLOYING]
    )
    if not starting.update(state=ReleaseState.DEPLOYING):
        return ReleaseState(Release.objects.get(pk=release.pk).state)  # ended meanwhile
    release_changed(app_id=release.app_id)
    _say(release, f"Deploying {release.label}: {release.description}", step="start")
    try:
        if release.cause == ReleaseCause.ROLLBACK and release_image_deleted(release=release):
            raise Conflict(
                f"{release.description}: its image was deleted from the registry (the images "
                f"of the last {settings.PAAS_KEEP_IMAGES} releases, PAAS_KEEP_IMAGES, and of "
                "the serving one are kept); roll back to a newer release or build again"
            )
        release_phase_run(release)
        failpoint("deploy.after_release_command")  # recorded as done, no instance started
        for formation in _formation(release.app):
            indices = list(range(1, formation.count + 1))
            _start_and_check(_place(release, formation, indices))
        failpoint("deploy.before_switch")  # new instances healthy, router untouched
        if not _promote(release):
            # Another run of this deploy (resumed while this one seemed
            # dead, paas/hosts/resume.py) ended it first: its outcome stands.
            return ReleaseState(Release.objects.get(pk=release.pk).state)
    except PaasError as exc:
        return _fail(release, exc.message)
    except DATABASE_UNAVAILABLE:
        # Not the release's fault (and its failure could not be written now):
        # the task runs it again once the database is back, and every step
        # picks up what is done (the slots' rows and containers stay).
        raise
    except Exception as exc:
        # A bug must not leave the release "deploying" for ever: fail it
        # (its instances removed, the old release serving) and say so.
        log.exception("deploy of %s crashed", release)
        return _fail(release, f"internal error: {type(exc).__name__}: {exc}")
    failpoint("deploy.after_switch")  # live, old instances not yet told to stop
    retire_later(app_id=release.app_id)
    return ReleaseState.CURRENT


def _slot(instance: Instance) -> str:
    return f"{instance.process_type}.{instance.index}"


def _progress(instance: Instance, step: str, text: str) -> None:
    deploy_progress(app_id=instance.app_id, release=instance.release.number, step=step, text=text)


def _say(release: Release, text: str, *, step: str = "") -> None:
    """A platform line in the app's log (what the deploy did, for the app's
    people), and with a ``step`` a deploy-progress event for its page."""
    from paas.logs.services import logs_platform_say

    if step:
        deploy_progress(app_id=release.app_id, release=release.number, step=step, text=text)

    try:
        logs_platform_say(app_id=release.app_id, text=text)
    except Exception:  # the log is a view on the deploy, never a reason to stop it
        log.exception("could not log %r for %s", text, release)


def _fail(release: Release, reason: str) -> ReleaseState:
    """Fail a release still deploying; one that another run of its deploy
    ended meanwhile keeps that outcome (and its instances)."""
    failed = Release.objects.filter(pk=release.pk, state=ReleaseState.DEPLOYING).update(
        state=ReleaseState.FAILED, error=reason
    )
    if not failed:
        return ReleaseState(Release.objects.get(pk=release.pk).state)
    log.info("release %s failed: %s", release, reason)
    _say(release, f"{release.label} failed: {reason}", step="failed")
    release_changed(app_id=release.app_id)
    for instance in Instance.objects.filter(release=release).select_related("host"):
        instance_remove(instance)
    audit_record(actor=None, app=release.app, action="deploy", target=release.label,
                 result=AuditResult.FAILED, detail=reason)  # fmt: skip
    return ReleaseState.FAILED


def _promote(release: Release) -> bool:
    """Switch the router inside the transaction that makes the release
    current: anyone who sees it current also gets it through the router, and
    a router that refuses the config leaves the old release current. The
    router lock is held past the commit, so a concurrent apply (a reconcile)
    cannot route from the state before it.

    Only a release still deploying is promoted (a conditional update), so
    two runs of one deploy make it live once; False for the one that lost."""
    with router_lock(), transaction.atomic():
        won = Release.objects.filter(pk=release.pk, state=ReleaseState.DEPLOYING).update(
            state=ReleaseState.CURRENT, deployed_at=timezone.now(), error=""
        )
        if not won:
            return False
        Release.objects.filter(app=release.app, state=ReleaseState.CURRENT).exclude(
            pk=release.pk
        ).update(state=ReleaseState.RETIRED)
        switch = time.monotonic()
        routes_apply()
        log.info("router switched in %.0f ms", (time.monotonic() - switch) * 1000)
        deploy_progress(app_id=release.app_id, release=release.number, step="router",
                        text=f"router switched to {release.label}")  # fmt: skip
        release_changed(app_id=release.app_id)
    audit_record(actor=None, app=release.app, action="deploy", target=release.label)
    _say(release, f"{release.label} is live", step="live")
    return True


def retire_later(*, app_id: int) -> None:
    from paas.hosts.tasks import retire_old

    retire_old.apply_async((app_id,), countdown=settings.PAAS_DRAIN_SECONDS)


def app_retire_old(*, app_id: int) -> int:
    """Stop and remove instances of releases that no longer run (after the drain)."""
    with app_lock(app_id):
        return _retire_old(app_id)


def _retire_old(app_id: int) -> int:
    old = Instance.objects.filter(
        app_id=app_id, release__state__in=[ReleaseState.RETIRED, ReleaseState.FAILED]
    ).select_related("host")
    count = 0
    for instance in old:
        failpoint("deploy.retire")  # switched, drained, the old instance not yet stopped
        instance_remove(instance)
        count += 1
    return count


def app_converge(*, app_id: int) -> None:
    """Bring the current release to the formation: start what is missing,
    stop the surplus (highest indices first, after the router let go)."""
    with app_lock(app_id):
        _converge(app_id)


def _converge(app_id: int) -> None:
    app = App.objects.filter(pk=app_id).first()
    release = Release.objects.filter(app=app, state=ReleaseState.CURRENT).first() if app else None
    if release is None:
        return
    surplus = []
    for formation in Formation.objects.filter(app=app):
        running = Instance.objects.filter(release=release, process_type=formation.process_type)
        wanted = list(range(1, formation.count + 1))
        try:
            _start_and_check(_place(release, formation, wanted))
        except PaasError as exc:
            audit_record(actor=None, app=app, action="scale", result=AuditResult.FAILED,
                         target=f"{formation.process_type}={formation.count}",
                         detail=exc.message)  # fmt: skip
            continue
        surplus += list(running.filter(index__gt=formation.count).select_related("host"))
    for instance in surplus:
        Instance.objects.filter(pk=instance.pk).update(desired=DesiredState.STOPPED, healthy=False)
        instance_changed(instance)
    routes_apply()
    for instance in surplus:
        instance_remove(instance)


def app_set_running(*, user: User, app: App, running: bool) -> None:
    """Stop or start the whole app (its current release's instances)."""
    desired = DesiredState.RUNNING if running else DesiredState.STOPPED
    instances = Instance.objects.filter(
        app=app, release__state=ReleaseState.CURRENT
    ).select_related("host", "release", "app")
    instances.update(desired=desired)
    if not running:
        Instance.objects.filter(app=app).update(healthy=False)
        routes_apply()
    instances_changed(app_id=app.pk, instance_ids=instances.values_list("pk", flat=True))
    from paas.hosts.lifecycle import instance_apply_desired

    for instance in instances:
        instance.desired = desired
        instance_apply_desired(instance)
    if running:
        routes_apply()
    audit_record(actor=user, app=app, action="app.start" if running else "app.stop")
