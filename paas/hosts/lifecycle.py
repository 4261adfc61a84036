"""Lifecycle controls: per instance (stop, start, restart, kill with a
signal) and a rolling restart of an app. Every action is audited.

A restart never leaves an app without a healthy upstream: instances restart
one at a time, each leaving the router (and a short drain) before its
process stops and rejoining once it answers again; and when the instance
is the only one serving, a temporary extra instance of the same release
(a "surge", the next free index) starts first, passes its health check
and serves while it restarts, then is removed. If no host has room for
the surge, the restart goes ahead in place and says so in the app's log.
Actions of one app take its deploy lock, so a deploy, a scale or another
restart never interleaves with them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from paas.accounts.services import require_role
from paas.applications.audit import audit_record
from paas.applications.models import App, AuditResult, Formation, ReleaseState
from paas.core.errors import NotFound, PaasError, ValidationFailed
from paas.hosts.instances import (
    instance_ensure,
    instance_health_check,
    instance_observe,
    instance_remove,
)
from paas.hosts.live import instance_changed
from paas.hosts.locks import app_lock
from paas.hosts.models import DesiredState, HostState, Instance, InstanceState
from paas.hosts.routing import routes_apply
from paas.hosts.services import host_client

log = logging.getLogger(__name__)

RESTART_DRAIN_MAX_S = 5.0  # requests in flight to a leaving instance finish first

SIGNAL_RE = re.compile(r"^(SIG)?[A-Z0-9]{2,8}$|^[0-9]{1,2}$")
INSTANCE_ACTIONS = {"stop", "start", "restart", "kill"}


def instance_apply_desired(instance: Instance) -> None:
    """Make the container match ``instance.desired`` (start and health-check, or stop)."""
    client = host_client(instance.host)
    if instance.desired == DesiredState.STOPPED:
        instance_observe(
            instance, client.stop(instance.container_name, timeout_s=settings.PAAS_STOP_GRACE_S)
        )
        return
    instance_observe(instance, client.start(instance.container_name))
    if instance.process_type == "web":
        instance_health_check(instance)


def _instance_for(user: User, app: App, name: str) -> Instance:
    require_role(user=user, team_id=app.team_id, action="deploy")
    instance = (
        Instance.objects.filter(app=app, container_name=name)
        .select_related("host", "release", "app")
        .first()
    )
    if instance is None:
        raise NotFound(f"{app.name} has no instance {name!r}.")
    return instance


def instance_action_request(
    *, user: User, app: App, name: str, action: str, signal: str = "KILL"
) -> None:
    """Check and queue an instance action for the worker (which alone may
    switch the router); the outcome lands in the audit log."""
    _validate(action, signal)
    instance = _instance_for(user, app, name)
    from paas.hosts.tasks import instance_action_task

    args = (instance.pk, action, signal, user.pk)
    transaction.on_commit(lambda: instance_action_task.delay(*args))


APP_ACTIONS = {"restart", "stop", "start"}


def app_action_request(*, user: User, app: App, action: str) -> None:
    """Check and queue a whole-app action (restart, stop, start) for the worker."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    if action not in APP_ACTIONS:
        raise ValidationFailed("The action is restart, stop or start.", field="action")
    from paas.hosts.tasks import app_action_task

    args = (app.pk, action, user.pk)
    transaction.on_commit(lambda: app_action_task.delay(*args))


def _validate(action: str, signal: str) -> None:
    if action not in INSTANCE_ACTIONS:
        raise ValidationFailed(f"Unknown action {action!r}.", field="action")
    if action == "kill" and not SIGNAL_RE.fullmatch(signal.upper()):
        raise ValidationFailed(f"{signal!r} is not a signal name or number.", field="signal")


def instance_action(
    *, user: User, app: App, name: str, action: str, signal: str = "KILL"
) -> Instance:
    """``stop``/``start`` change the desired state; ``restart`` and ``kill``
    act once (after a kill the restart policy brings it back, as the agent does)."""
    _validate(action, signal)
    instance = _instance_for(user, app, name)
    detail = f"signal {signal.upper()}" if action == "kill" else ""
    try:
        with app_lock(app.pk):
            _act(instance, action, signal.upper())
    except PaasError as exc:
        audit_record(actor=user, app=app, action=f"instance.{action}", target=name,
                     result=AuditResult.FAILED, detail=exc.message)  # fmt: skip
        raise
    audit_record(actor=user, app=app, action=f"instance.{action}", target=name, detail=detail)
    return instance


def _act(instance: Instance, action: str, signal: str) -> None:
    client = host_client(instance.host)
    if action in {"stop", "start"}:
        desired = DesiredState.STOPPED if action == "stop" else DesiredState.RUNNING
        Instance.objects.filter(pk=instance.pk).update(desired=desired)
        instance.desired = desired
        if action == "stop":
            Instance.objects.filter(pk=instance.pk).update(healthy=False)
            routes_apply()
        instance_changed(instance)
        instance_apply_desired(instance)
    elif action == "restart":
        _restart_keeping_an_upstream(instance)
    else:
        instance_observe(instance, client.kill(instance.container_name, signal=signal))
    routes_apply()


def _restart_keeping_an_upstream(instance: Instance) -> None:
    if instance.process_type != "web" or _others_serving(instance):
        _restart_in_place(instance)
        return
    surge = _surge_start(instance)
    try:
        _restart_in_place(instance)
        routes_apply()  # back in the router before the surge leaves it
    finally:
        if surge is not None:
            _surge_remove(surge)


def _others_serving(instance: Instance) -> bool:
    return (
        Instance.objects.filter(
            app_id=instance.app_id, process_type="web", healthy=True,
            state=InstanceState.RUNNING, desired=DesiredState.RUNNING,
            release__state=ReleaseState.CURRENT,
            host__state__in=[HostState.READY, HostState.DRAINING],
        )
        .exclude(pk=instance.pk)
        .exists()
    )  # fmt: skip


def _restart_in_place(instance: Instance) -> None:
    """Out of the router, drained, restarted, and healthy again (the caller
    puts it back in the router)."""
    Instance.objects.filter(pk=instance.pk).update(healthy=False)
    instance_changed(instance)
    if instance.process_type == "web":
        routes_apply()
        _drain()
    client = host_client(instance.host)
    instance_observe(
        instance, client.restart(instance.container_name, timeout_s=settings.PAAS_STOP_GRACE_S)
    )
    if instance.process_type == "web":
        instance_health_check(instance)


def _surge_start(instance: Instance) -> Instance | None:
    """A healthy, routed extra instance of ``instance``'s release, or None
    (logged) when none can be had: nothing fits, or it failed its check."""
    from paas.hosts.deploy import instances_place

    formation = Formation.objects.filter(
        app_id=instance.app_id, process_type=instance.process_type
    ).first()
    if formation is None:
        return None
    taken = Instance.objects.filter(
        release_id=instance.release_id, process_type=instance.process_type
    ).aggregate(top=Max("index"))["top"]
    surge = None
    try:
        (surge,) = instances_place(
            release=instance.release, formation=formation, indices=[(taken or 0) + 1]
        )
        instance_ensure(surge)
        instance_health_check(surge)
    except PaasError as exc:
        _say(instance, f"restarting {instance.container_name} in place: no extra instance "
                       f"could serve meanwhile ({exc.message})")  # fmt: skip
        if surge is not None:
            _surge_remove(surge)
        return None
    routes_apply()
    return surge


def _surge_remove(surge: Instance) -> None:
    Instance.objects.filter(pk=surge.pk).update(desired=DesiredState.STOPPED, healthy=False)
    routes_apply()
    _drain()
    instance_remove(surge)


def _drain() -> None:
    time.sleep(min(settings.PAAS_DRAIN_SECONDS, RESTART_DRAIN_MAX_S))


def _say(instance: Instance, text: str) -> None:
    from paas.logs.services import logs_platform_say

    try:
        logs_platform_say(app_id=instance.app_id, text=text)
    except Exception:  # the log is a view on the restart, never a reason to stop it
        log.exception("could not log %r", text)


def app_restart(*, user: User, app: App) -> int:
    """Rolling restart: one instance at a time leaves the router, restarts,
    passes its health check and comes back, so others keep serving."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    try:
        with app_lock(app.pk):
            instances = list(
                Instance.objects.filter(
                    app=app, release__state=ReleaseState.CURRENT, desired=DesiredState.RUNNING
                ).select_related("host", "release", "app")
            )
            for instance in instances:
                _act(instance, "restart", "")
    except PaasError as exc:
        audit_record(actor=user, app=app, action="app.restart", result=AuditResult.FAILED,
                     detail=exc.message)  # fmt: skip
        raise
    audit_record(actor=user, app=app, action="app.restart", detail=f"{len(instances)} instances")
    return len(instances)


def instance_action_by_id(*, instance_id: int, action: str, signal: str, user_id: int) -> None:
    """The worker's side of :func:`instance_action_request` (failures are audited)."""
    instance = Instance.objects.select_related("app").filter(pk=instance_id).first()
    user = User.objects.filter(pk=user_id).first()
    if instance is None or user is None:
        return  # removed meanwhile: nothing to act on
    with contextlib.suppress(PaasError):
        instance_action(user=user, app=instance.app, name=instance.container_name,
                        action=action, signal=signal)  # fmt: skip


def app_action_by_id(*, app_id: int, action: str, user_id: int) -> None:
    from paas.hosts.deploy import app_set_running

    app = App.objects.filter(pk=app_id).first()
    user = User.objects.filter(pk=user_id).first()
    if app is None or user is None:
        return
    with contextlib.suppress(PaasError):
        if action == "restart":
            app_restart(user=user, app=app)
        else:
            app_set_running(user=user, app=app, running=action == "start")
