"""Reads for the dashboard, the hosts page and the hosts API: each is a few
queries, whatever the number of apps or hosts (no query per row). Hosts
belong to no team: only platform admins (staff) read them through the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from paas.accounts.types import AnyUser
from paas.applications.models import App, Release, ReleaseState
from paas.applications.selectors import apps_visible_to
from paas.core.errors import NotFound, PaasError, PermissionDenied
from paas.hosts.models import DesiredState, Host, HostState, Instance, InstanceState
from paas.hosts.route_sources import route_sources

CRASHED = [InstanceState.CRASHED, InstanceState.BACKOFF]


def app_summaries(*, user: AnyUser) -> QuerySet[App]:
    """The user's apps, each annotated with ``deploying`` (a release is on its
    way), ``current_release`` (its number or None), ``last_deploy_at``,
    ``wanted`` (instances meant to run), ``running`` and ``crashed``."""
    return summaries_of(apps_visible_to(user=user))


def summaries_of(apps: QuerySet[App]) -> QuerySet[App]:
    """``apps`` annotated as by :func:`app_summaries`."""
    current = Release.objects.filter(app=OuterRef("pk"), state=ReleaseState.CURRENT).order_by(
        "-number"
    )
    wanted = Q(instances__desired=DesiredState.RUNNING)
    rolling_out = Release.objects.filter(
        app=OuterRef("pk"), state__in=[ReleaseState.PENDING, ReleaseState.DEPLOYING]
    )
    return apps.annotate(
        deploying=Exists(rolling_out),
        current_release=Subquery(current.values("number")[:1], output_field=IntegerField()),
        last_deploy_at=Subquery(
            Release.objects.filter(app=OuterRef("pk"), deployed_at__isnull=False)
            .order_by("-deployed_at")
            .values("deployed_at")[:1]
        ),
        wanted=Count("instances", filter=wanted),
        running=Count("instances", filter=wanted & Q(instances__state=InstanceState.RUNNING)),
        crashed=Count("instances", filter=wanted & Q(instances__state__in=CRASHED)),
    )


def app_status(app: App) -> str:
    """One word for an app annotated by :func:`app_summaries`."""
    if app.deploying:  # type: ignore[attr-defined]
        return "deploying"
    if app.crashed:  # type: ignore[attr-defined]
        return "crashed"
    if app.current_release is None:  # type: ignore[attr-defined]
        return "not deployed"
    if not app.wanted:  # type: ignore[attr-defined]
        return "stopped"
    return "running" if app.running == app.wanted else "starting"  # type: ignore[attr-defined]


class RouterSourcesState(StrEnum):
    IN_SYNC = "in-sync"  # the agent accepted the list the control plane wants
    PENDING = "pending"  # not pushed yet: the next heartbeat does
    FAILING = "failing"  # the last push failed; tried again after a backoff


@dataclass(frozen=True)
class RouterSourcesView:
    """Who a host's route ports answer, as its agent accepted them (None:
    never confirmed), against what the control plane wants (None: it
    cannot tell, ``error`` says why)."""

    state: RouterSourcesState
    accepted: list[str] | None
    wanted: list[str] | None
    error: str = ""
    retry_at: datetime | None = None


def host_router_sources(*, host: Host) -> RouterSourcesView:
    accepted = host.router_sources
    try:
        wanted: list[str] | None = route_sources(agent_url=host.agent_url)
    except PaasError as exc:  # no route to it: the push would fail the same way
        return RouterSourcesView(RouterSourcesState.FAILING, accepted, None, exc.message)
    if host.router_sources_failures:
        return RouterSourcesView(
            RouterSourcesState.FAILING, accepted, wanted,
            host.router_sources_error, host.router_sources_retry_at,
        )  # fmt: skip
    state = RouterSourcesState.IN_SYNC if accepted == wanted else RouterSourcesState.PENDING
    return RouterSourcesView(state, accepted, wanted)


@dataclass(frozen=True)
class HostSummary:
    host: Host
    reserved_bytes: int  # memory limits of the instances placed there
    instances: int
    running: int
    heartbeat_age_s: float | None
    placed: list[Instance]  # what is meant to run there, by app and slot
    # Memory in use, as last measured (paas.metrics); None without samples.
    used_bytes: int | None = None
    # Filled by the hosts page only (it looks up a route per host).
    router_sources: RouterSourcesView | None = None

    @property
    def used_percent(self) -> int:
        if self.host.memory_bytes <= 0:
            return 100 if self.reserved_bytes else 0
        return min(100, round(100 * self.reserved_bytes / self.host.memory_bytes))

    @property
    def in_use_percent(self) -> int:
        if self.used_bytes is None or self.host.memory_bytes <= 0:
            return 0
        return min(100, round(100 * self.used_bytes / self.host.memory_bytes))

    @property
    def free_bytes(self) -> int:
        return max(0, self.host.memory_bytes - self.reserved_bytes)


def host_summaries(*, now: datetime | None = None) -> list[HostSummary]:
    """Every host that has not been removed, with what runs on it."""
    now = now or timezone.now()
    placed = (
        Instance.objects.filter(desired=DesiredState.RUNNING)
        .values("host_id")
        .annotate(
            reserved=Sum("memory_bytes"),
            count=Count("pk"),
            running=Count("pk", filter=Q(state=InstanceState.RUNNING)),
        )
    )
    by_host = {row["host_id"]: row for row in placed}
    listed: dict[int, list[Instance]] = {}
    for instance in (
        Instance.objects.filter(desired=DesiredState.RUNNING)
        .select_related("app", "release")
        .order_by("app__name", "process_type", "index")
    ):
        listed.setdefault(instance.host_id, []).append(instance)
    summaries = []
    for host in Host.objects.exclude(state=HostState.REMOVED).order_by("name"):
        row = by_host.get(host.pk, {})
        beat = host.last_heartbeat_at
        summaries.append(
            HostSummary(
                host=host,
                reserved_bytes=row.get("reserved") or 0,
                instances=row.get("count", 0),
                running=row.get("running", 0),
                heartbeat_age_s=(now - beat).total_seconds() if beat else None,
                placed=listed.get(host.pk, []),
            )
        )
    return summaries


def _require_admin(user: AnyUser) -> None:
    if not user.is_staff:
        raise PermissionDenied("Only platform admins can see hosts.")


def hosts_for_admin(*, user: AnyUser) -> QuerySet[Host]:
    _require_admin(user)
    return Host.objects.order_by("name")


def host_for_admin(*, user: AnyUser, name: str) -> Host:
    _require_admin(user)
    host = Host.objects.filter(name=name).first()
    if host is None:
        raise NotFound(f"No host named {name[:100]!r}.")
    return host
