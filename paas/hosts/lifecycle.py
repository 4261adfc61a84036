"""Lifecycle controls: per instance (stop, start, restart, kill with a
signal) and a rolling restart of an app. Every action is audited."""

from __future__ import annotations

import re

from django.contrib.auth.models import User

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


def instance_action(
    *, user: User, app: App, name: str, action: str, signal: str = "KILL"
) -> Instance:
    """``stop``/``start`` change the desired state; ``restart`` and ``kill``
    act once (after a kill the restart policy brings it back, as the agent does)."""
    if action not in INSTANCE_ACTIONS:
        raise ValidationFailed(f"Unknown action {action!r}.", field="action")
    if action == "kill" and not SIGNAL_RE.fullmatch(signal.upper()):
        raise ValidationFailed(f"{signal!r} is not a signal name or number.", field="signal")
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
