"""The router's desired state: every app with a current release, routed to
its healthy web instances on ready hosts."""

from __future__ import annotations

import logging
from collections import defaultdict

from django.conf import settings

from paas.applications.models import ReleaseState
from paas.hosts.models import DesiredState, HostState, Instance, InstanceState
from paas.router.routes import Route, Upstream
from paas.router.services import router_apply

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
        .order_by("app__name", "index")
        .values_list("app__name", "address", "port")
    )
    upstreams: dict[str, list[Upstream]] = defaultdict(list)
    for app, address, port in rows:
        upstreams[app].append(Upstream(address=address, port=port))
    return [
        Route(app=app, hostnames=(f"{app}.{settings.PAAS_DOMAIN}",), upstreams=tuple(ups))
        for app, ups in sorted(upstreams.items())
    ]


def routes_apply() -> list[Route]:
    """Point the router at the desired state (validated, graceful reload)."""
    routes = routes_desired()
    router_apply(routes=routes)
    return routes
