"""The periodic reconcile: compare every ready host's containers with the
desired instances and fix the drift. Missing instances are created, exited
ones that should run are started, running ones that should not are stopped,
and containers of ours (labelled ``paas.app``) that no instance claims are
removed. Instances on unreachable hosts are marked lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from paas.core.errors import PaasError
from paas.hosts.instances import instance_ensure, instance_health_check, instance_observe
from paas.hosts.models import DesiredState, Host, HostState, Instance, InstanceState
from paas.hosts.routing import routes_apply
from paas.hosts.services import host_client
from runtime_agent.wire import ContainerState

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _reconcile_host(host: Host, report: ReconcileReport) -> None:
    client = host_client(host, timeout_s=10)
    ours = {c.name: c for c in client.list() if "paas.app" in c.labels}
    instances = Instance.objects.filter(host=host).select_related("release", "app", "host")
    for instance in instances:
        info = ours.pop(instance.container_name, None)
        running = instance.desired == DesiredState.RUNNING
        if running and (info is None or info.state in (ContainerState.EXITED,)):
            Instance.objects.filter(pk=instance.pk).update(healthy=False)
            instance_ensure(instance)
            report.started.append(instance.container_name)
            _check(instance, report)
        elif not running and info is not None and info.state == ContainerState.RUNNING:
            instance_observe(instance, client.stop(instance.container_name))
            report.stopped.append(instance.container_name)
        elif info is not None:
            instance_observe(instance, info)
    for name in ours:
        client.remove(name, force=True)
        report.removed.append(name)


def _check(instance: Instance, report: ReconcileReport) -> None:
    """A restarted web instance rejoins the router only once it answers."""
    if instance.process_type != "web":
        return
    try:
        instance_health_check(instance)
    except PaasError as exc:
        report.errors.append(exc.message)


def reconcile() -> ReconcileReport:
    report = ReconcileReport()
    for host in Host.objects.filter(state__in=[HostState.READY, HostState.DRAINING]):
        try:
            _reconcile_host(host, report)
        except PaasError as exc:
            report.errors.append(f"{host.name}: {exc.message}")
    lost = Instance.objects.filter(host__state=HostState.UNREACHABLE).exclude(
        state=InstanceState.LOST
    )
    report.lost = list(lost.values_list("container_name", flat=True))
    lost.update(state=InstanceState.LOST, healthy=False)
    try:
        routes_apply()
    except PaasError as exc:
        report.errors.append(f"router: {exc.message}")
    if report.started or report.removed or report.stopped:
        log.info("reconcile: %s", report)
    return report
