"""Following the agents between reconciles: instance states within seconds.

The reconcile (every ``PAAS_RECONCILE_SECONDS``) fixes drift, which takes
agent calls that create and start containers. Knowing what happened needs
far less: one ``GET /v1/containers`` per host, an in-memory list on the
agent, every ``PAAS_OBSERVE_SECONDS`` (a beat task). So a crash loop (the
agent restarting with backoff), an OOM kill or an exit shows up in the UI
and the API within a poll, and a web instance that went down leaves the
router at once instead of waiting for the router's own error handling.

Why a poll rather than an event feed from the agent: a poll needs no
connection held per host, no cursor to resume after a restart of either
side, and cannot miss an event: every poll reads the whole truth again,
and a host that did not answer is simply asked again two seconds later
(deciding that it is unreachable stays the heartbeat's job).

An instance the agent restarted by itself (after a crash or a kill) is back
in the router once it answers its health check again. That is skipped while
the app's deploy lock is held: a deploy or a restart decides then which
instance serves.

Rows are written only when something changed, so a quiet platform costs one
read per host per poll.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from paas.applications.models import ReleaseState
from paas.core.errors import PaasError
from paas.hosts.instances import instance_answers, observed_fields
from paas.hosts.live import instance_changed
from paas.hosts.locks import app_lock_held
from paas.hosts.models import DesiredState, Host, HostState, Instance, InstanceState
from paas.hosts.routing import routes_apply
from paas.hosts.services import host_client
from paas.hosts.upstreams import instance_upstream
from runtime_agent import wire

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 1.0  # one quick try per poll: the next poll tries again


@dataclass
class ObserveReport:
    changed: list[str] = field(default_factory=list)  # "name: old -> new"
    readmitted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def hosts_observe() -> ObserveReport:
    """Bring every instance's observed state up to what its agent says now."""
    report = ObserveReport()
    routes_changed = False
    for host in Host.objects.filter(state__in=[HostState.READY, HostState.DRAINING]):
        # Rows first, the agent's list second: what the list says is newer
        # than every row it is compared with (see _observe_instance).
        instances = list(Instance.objects.filter(host=host).select_related("release", "host"))
        try:
            infos = host_client(host, timeout_s=LIST_TIMEOUT_S).list()
        except PaasError as exc:
            report.errors.append(f"{host.name}: {exc.message}")
            continue
        by_name = {i.name: i for i in infos}
        for instance in instances:
            info = by_name.get(instance.container_name)
            if info is not None:  # else being created, or gone: the reconcile's to decide
                routes_changed |= _observe_instance(instance, info, report)
    if routes_changed:
        try:
            routes_apply()
        except PaasError as exc:
            report.errors.append(f"router: {exc.message}")
    if report.changed or report.readmitted:
        log.info("observe: %s", report)
    return report


def _observe_instance(instance: Instance, info: wire.ContainerInfo, report: ObserveReport) -> bool:
    """Update one row from ``info``; True if the router must change. The
    write is conditional on the row being as read: a deploy or restart that
    observed the instance meanwhile knows better, and the next poll looks again."""
    fields = observed_fields(instance, info)
    if fields["state"] != InstanceState.RUNNING and instance.healthy:
        fields["healthy"] = False
    if any(getattr(instance, k) != v for k, v in fields.items()):
        written = Instance.objects.filter(pk=instance.pk, observed_at=instance.observed_at).update(
            **fields, observed_at=timezone.now()
        )
        if not written:
            return False
        report.changed.append(f"{instance.container_name}: {instance.state} -> {fields['state']}")
        instance_changed(instance)
        for key, value in fields.items():
            setattr(instance, key, value)
        if "healthy" in fields:
            return True
    if _readmit(instance):
        report.readmitted.append(instance.container_name)
        return True
    return False


def _readmit(instance: Instance) -> bool:
    """A serving instance the agent brought back rejoins the router once it
    answers (never while a deploy or restart of its app holds the lock)."""
    wanted = (
        instance.process_type == "web"
        and not instance.healthy
        and instance.desired == DesiredState.RUNNING
        and instance.state == InstanceState.RUNNING
        and instance.release.state == ReleaseState.CURRENT
        and instance.address
    )
    if not wanted:
        return False
    upstream = instance_upstream(instance)  # the router's way in (a route port across hosts)
    if upstream is None:
        return False
    path = settings.PAAS_HEALTH_PATH
    if not instance_answers(*upstream, path, timeout_s=PROBE_TIMEOUT_S):
        return False
    if app_lock_held(instance.app_id):  # asked after the probe: the lock may be newer
        return False
    # Conditional: a stop or restart that began meanwhile keeps it out.
    readmitted = bool(
        Instance.objects.filter(
            pk=instance.pk, healthy=False, desired=DesiredState.RUNNING,
            state=InstanceState.RUNNING,
        ).update(healthy=True)
    )  # fmt: skip
    if readmitted:
        instance_changed(instance)
    return readmitted
