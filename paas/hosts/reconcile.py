"""The periodic reconcile: compare every ready host's containers with the
desired instances and fix the drift. Missing instances are created, exited
ones that should run are started, running ones that should not are stopped,
and containers of ours (labelled ``paas.app``) that no instance claims are
removed. Instances on unreachable hosts are marked lost. A removal that
began and did not finish (the agent died or restarted mid-stop, so the row
stayed behind, desired stopped) is finished here: nothing else would come
back for it."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from django.conf import settings

from paas.applications.models import Formation, ReleaseState
from paas.core.errors import PaasError
from paas.hosts.instances import (
    instance_ensure,
    instance_health_check,
    instance_observe,
    instance_remove,
)
from paas.hosts.live import instances_changed
from paas.hosts.locks import app_lock_held
from paas.hosts.models import DesiredState, Host, HostState, Instance, InstanceState
from paas.hosts.release_phase import RELEASE_PHASE
from paas.hosts.routing import routes_apply
from paas.hosts.scheduler import schedule
from paas.hosts.services import host_client
from paas.hosts.upstreams import instance_move
from runtime_agent.wire import ContainerState

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _reconcile_host(host: Host, report: ReconcileReport) -> None:
    client = host_client(host, timeout_s=10)
    # A release phase's container is its deploy's to remove, not a stray.
    ours = {
        c.name: c
        for c in client.list()
        if "paas.app" in c.labels and c.labels.get("paas.phase") != RELEASE_PHASE
    }
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
            instance_observe(
                instance, client.stop(instance.container_name, timeout_s=settings.PAAS_STOP_GRACE_S)
            )
            report.stopped.append(instance.container_name)
        elif info is not None:
            was_lost = instance.state == InstanceState.LOST
            instance_observe(instance, info)
            if was_lost and running and info.state == ContainerState.RUNNING:
                # Its host is back and nothing took its place (no host had
                # room): it rejoins the router once it answers again.
                _check(instance, report)
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


def _reschedule(report: ReconcileReport) -> None:
    """Move the running instances of current releases off unreachable and
    draining hosts. The slot keeps its container name; the old container,
    if its host ever answers again, is a stray there and gets removed."""
    stranded = Instance.objects.filter(
        desired=DesiredState.RUNNING,
        release__state=ReleaseState.CURRENT,
        host__state__in=[HostState.UNREACHABLE, HostState.DRAINING],
    ).select_related("host", "release", "app")
    for instance in stranded:
        old_host = instance.host
        try:
            (new_host,) = schedule(
                app_id=instance.app_id, process_type=instance.process_type,
                memory_bytes=instance.memory_bytes, count=1,
            )  # fmt: skip
        except PaasError as exc:
            report.errors.append(f"{instance.container_name}: {exc.message}")
            continue
        try:
            # Host ports are per host: the slot gets fresh ones on its new host.
            if not instance_move(instance=instance, host=new_host):
                continue  # another reconcile moved it first
            instance_ensure(instance)
        except PaasError as exc:
            report.errors.append(f"{instance.container_name}: {exc.message}")
            continue
        report.moved.append(f"{instance.container_name}: {old_host.name} -> {new_host.name}")
        _check(instance, report)
        if old_host.state == HostState.DRAINING:
            with contextlib.suppress(PaasError):
                host_client(old_host).remove(instance.container_name, force=True)


def _unfinished_removals() -> list[Instance]:
    """Rows a removal left behind: desired stopped and no longer part of the
    app (a release that is not current, or a slot beyond its formation). A
    stopped app's instances are desired stopped too, but still in it."""
    leftovers = (
        Instance.objects.filter(
            desired=DesiredState.STOPPED,
            host__state__in=[HostState.READY, HostState.DRAINING],
        )
        .exclude(process_type=RELEASE_PHASE)
        .select_related("release", "host", "app")
    )
    counts = {
        (f.app_id, f.process_type): f.count
        for f in Formation.objects.filter(app__in=leftovers.values("app"))
    }
    return [
        i
        for i in leftovers
        if i.release.state != ReleaseState.CURRENT
        or i.index > counts.get((i.app_id, i.process_type), 0)
    ]


def _finish_removals(report: ReconcileReport) -> None:
    for instance in _unfinished_removals():
        if app_lock_held(instance.app_id):
            continue  # a deploy or scale of the app is under way: it owns its rows
        pk = instance.pk
        instance_remove(instance)  # keeps the row again if the host still fails
        if not Instance.objects.filter(pk=pk).exists():
            report.removed.append(instance.container_name)


def reconcile() -> ReconcileReport:
    report = ReconcileReport()
    for host in Host.objects.filter(state__in=[HostState.READY, HostState.DRAINING]):
        try:
            _reconcile_host(host, report)
        except PaasError as exc:
            report.errors.append(f"{host.name}: {exc.message}")
    _finish_removals(report)
    lost = Instance.objects.filter(host__state=HostState.UNREACHABLE).exclude(
        state=InstanceState.LOST
    )
    lost_rows = list(lost.values_list("pk", "app_id", "container_name"))
    report.lost = [name for _, _, name in lost_rows]
    lost.update(state=InstanceState.LOST, healthy=False)
    by_app: dict[int, list[int]] = {}
    for pk, app_id, _ in lost_rows:
        by_app.setdefault(app_id, []).append(pk)
    for app_id, ids in by_app.items():
        instances_changed(app_id=app_id, instance_ids=ids)
    _reschedule(report)
    try:
        routes_apply()
    except PaasError as exc:
        report.errors.append(f"router: {exc.message}")
    if report.started or report.removed or report.stopped or report.moved:
        log.info("reconcile: %s", report)
    return report
