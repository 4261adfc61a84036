"""Lifecycle controls: per instance (stop, start, restart, kill with a
signal) and a rolling restart of an app. Every action is audited."""

from __future__ import annotations

import contextlib
import re

from django.contrib.auth.models import User
from django.db import transaction

from paas.accounts.services import require_role
from paas.applications.audit import audit_record
from paas.applications.models import App, AuditResult, ReleaseState
from paas.core.errors import NotFound, PaasError, ValidationFailed
from paas.hosts.instances import instance_health_check, instance_observe
from paas.hosts.models import DesiredState, Instance
from paas.hosts.routing import routes_apply
from paas.hosts.services import host_client

SIGNAL_RE = re.compile(r"^(SIG)?[A-Z0-9]{2,8}$|^[0-9]{1,2}$")
INSTANCE_ACTIONS = {"stop", "start", "restart", "kill"}


def instance_apply_desired(instance: Instance) -> None:
    """Make the container match ``instance.desired`` (start and health-check, or stop)."""
    client = host_client(instance.host)
    if instance.desired == DesiredState.STOPPED:
        instance_observe(instance, client.stop(instance.container_name))
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
        instance_apply_desired(instance)
    elif action == "restart":
        Instance.objects.filter(pk=instance.pk).update(healthy=False)
        routes_apply()
        instance_observe(instance, client.restart(instance.container_name))
        if instance.process_type == "web":
            instance_health_check(instance)
    else:
        instance_observe(instance, client.kill(instance.container_name, signal=signal))
    routes_apply()


def app_restart(*, user: User, app: App) -> int:
    """Rolling restart: one instance at a time leaves the router, restarts,
    passes its health check and comes back, so others keep serving."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    instances = list(
        Instance.objects.filter(
            app=app, release__state=ReleaseState.CURRENT, desired=DesiredState.RUNNING
        ).select_related("host", "release", "app")
    )
    try:
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
