"""The router's desired state: every app with a current release, routed to
its healthy web instances on ready (or draining) hosts, each at the
address the router reaches it at (paas/hosts/upstreams.py). An app whose
release has no healthy instance keeps its route with no upstream, so it
answers the router's clear 503 rather than "no such app"."""

from __future__ import annotations

import logging
from collections import defaultdict

from paas.applications.models import App, ReleaseState
from paas.hosts.models import DesiredState, HostState, Instance, InstanceState
from paas.hosts.upstreams import upstream_of
from paas.router.routes import Route, Upstream
from paas.router.selectors import routes_for_apps
from paas.router.services import router_apply, router_lock

log = logging.getLogger(__name__)


def routes_desired() -> list[Route]:
    rows = (
        Instance.objects.filter(
            process_type="web",
            desired=DesiredState.RUNNING,
            state=InstanceState.RUNNING,
            healthy=True,
            release__state=ReleaseState.CURRENT,
            host__state__in=[HostState.READY, HostState.DRAINING],
        )
        .exclude(address="")
        .order_by("index")
        .values_list("app_id", "host__agent_url", "address", "port", "route_port")
    )
    upstreams: dict[int, list[Upstream]] = defaultdict(list)
    for app_id, agent_url, address, port, route_port in rows:
        upstream = upstream_of(
            agent_url=agent_url, address=address, port=port, route_port=route_port
        )
        if upstream is not None:
            upstreams[app_id].append(Upstream(address=upstream[0], port=upstream[1]))
    apps = App.objects.filter(releases__state=ReleaseState.CURRENT).distinct().order_by("name")
    return routes_for_apps(apps=apps, upstreams=upstreams)


def routes_apply() -> list[Route]:
    """Point the router at the desired state (validated, graceful reload).
    Runs in the Celery worker (root): it writes the router's files and
    signals nginx."""
    with router_lock():  # computed under the lock: the last writer has the newest state
        routes = routes_desired()
        router_apply(routes=routes)
    return routes
