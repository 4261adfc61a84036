"""The hosts page, for platform admins only (anyone else gets a 404, as for
a page that does not exist): capacity and reserved memory per host, what
runs there, heartbeat age and state, who its route ports answer (router
sources: accepted by its agent, and in sync, pending or failing); drain, make ready, remove; and a
one-time join token for a new host, shown once."""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from paas.accounts.types import signed_in
from paas.core.errors import PaasError
from paas.hosts.models import Host, HostState
from paas.hosts.selectors import HostSummary, host_router_sources, host_summaries
from paas.hosts.services import host_remove, host_set_state, join_token_create
from paas.metrics.selectors import memory_in_use


def _with_memory_in_use(summaries: list[HostSummary]) -> list[HostSummary]:
    """Each host's measured memory: the sum over its instances' latest samples."""
    used = memory_in_use(containers=[i.container_name for s in summaries for i in s.placed])
    measured = []
    for summary in summaries:
        samples = [used[i.container_name] for i in summary.placed if i.container_name in used]
        measured.append(replace(summary, used_bytes=sum(samples)) if samples else summary)
    return measured


def _with_router_sources(summaries: list[HostSummary]) -> list[HostSummary]:
    return [replace(s, router_sources=host_router_sources(host=s.host)) for s in summaries]


def _admin_only(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise Http404("No such page.")


def _host_of(request: HttpRequest) -> Host:
    raw = request.POST.get("host", "")
    return get_object_or_404(
        Host.objects.exclude(state=HostState.REMOVED), pk=int(raw) if raw.isdigit() else 0
    )


def _host_action(request: HttpRequest) -> str:
    user = signed_in(request)
    host = _host_of(request)
    action = request.POST.get("action", "")
    if action == "drain":
        host_set_state(user=user, host=host, state=HostState.DRAINING)
        return (
            f"Draining {host.name}: no new instances go there, and the reconcile "
            "moves its instances to other hosts."
        )
    if action == "ready":
        host_set_state(user=user, host=host, state=HostState.READY)
        return f"{host.name} takes new instances again."
    if action == "remove":
        host_remove(user=user, host=host)
        return f"Removed {host.name}."
    raise PaasError("Unknown action.")


@never_cache  # a join token is in the page once; no cache may keep it
@login_required
@require_http_methods(["GET", "POST"])
def hosts(request: HttpRequest) -> HttpResponse:
    _admin_only(request)
    join_token, rejoin = None, None
    action = request.POST.get("action") if request.method == "POST" else None
    if action == "join-token":
        _, join_token = join_token_create(user=signed_in(request),
                                          note=request.POST.get("note", "").strip())  # fmt: skip
    elif action == "rejoin-token":
        # For a host whose agent certificate changed: only it can spend this.
        rejoin = _host_of(request)
        _, join_token = join_token_create(user=signed_in(request),
                                          note=f"re-join {rejoin.name}", rejoin=rejoin)  # fmt: skip
    elif request.method == "POST":
        try:
            messages.success(request, _host_action(request))
        except PaasError as exc:
            messages.error(request, exc.message)
        return redirect("hosts")
    context = {
        "summaries": _with_router_sources(_with_memory_in_use(host_summaries())),
        "join_token": join_token,
        "rejoin": rejoin,
        "panel_url": settings.PANEL_URL,
        "timeout_s": settings.PAAS_HOST_TIMEOUT_S,
        "join_token_ttl_min": settings.PAAS_JOIN_TOKEN_TTL_S // 60,
        "metrics_interval_s": settings.PAAS_METRICS_INTERVAL_S,
    }
    return render(request, "front/hosts.html", context)
