"""Keep each host's router sources where the control plane wants them.

A host's route ports answer its router sources only (paas/hosts/
route_sources.py says which). The join hands them out, but they change:
the operator moves the router, adds a second one, sets
``PAAS_ROUTER_SOURCES``; and a host that joined before the join handed any
out has none, so its route ports are refused. The agent takes a new list
while it runs (``PUT /v1/router-sources``); :func:`host_router_sources_push`
sends it and records what the agent accepted in ``Host.router_sources``.

Pushed: after a join (the agent confirms what the join wrote; a re-joined
agent may still run with the old list), at every heartbeat to each
answering host whose recorded list is not the wanted one
(:func:`hosts_router_sources_sync`), and when the operator asks
(``manage.py host_router_sources``, or the admin's action).

A host that answers its heartbeat but cannot take a push (an agent that
refuses it, one that stopped just after the heartbeat) is not tried at
every heartbeat with a warning each time: its failures are counted on the
host row (so a restarted worker keeps the count), and the sync tries it
again 2, 4, 8 ... heartbeats later, at most ``PAAS_ROUTER_SOURCES_BACKOFF_MAX_S``
apart; each failed try logs one warning that says when the next one is. A
push that works, from any path, clears the count.

``PAAS_AGENT_ROUTER_SOURCES`` on a host wins over any push: the agent keeps
the list for later and says so; it is recorded as accepted (pushing again
would change nothing) and the warning goes to the log and the audit trail.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from paas.applications.audit import audit_record
from paas.applications.models import AuditResult
from paas.core.errors import PaasError
from paas.hosts.agent_client import RouterSources
from paas.hosts.models import Host, HostState
from paas.hosts.route_sources import route_sources
from paas.hosts.services import host_client

log = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 5.0  # as the heartbeat's: the sync runs in its task


def host_router_sources_push(*, host: Host, actor: User | None = None) -> RouterSources:
    """Send ``host`` the router sources it should have; raises the agent's
    error (unreachable, refused) or ValidationFailed (no route to it)."""
    wanted = route_sources(agent_url=host.agent_url)
    answer = host_client(host, timeout_s=PUSH_TIMEOUT_S).set_router_sources(wanted)
    before = Host.objects.filter(pk=host.pk).values_list("router_sources", flat=True).first()
    Host.objects.filter(pk=host.pk).update(
        router_sources=answer.stored, router_sources_failures=0, router_sources_error="",
        router_sources_retry_at=None,
    )  # fmt: skip
    if before != answer.stored:
        _record(host, answer, actor)
    host.router_sources = answer.stored
    host.router_sources_failures, host.router_sources_error = 0, ""
    host.router_sources_retry_at = None
    return answer


def router_sources_backoff(failures: int) -> timedelta:
    """How long after its ``failures``-th failed push in a row a host waits."""
    # Capped before the power, so a host failing for months cannot overflow it.
    wait = settings.PAAS_HEARTBEAT_SECONDS * 2 ** min(failures, 32)
    return timedelta(seconds=min(wait, settings.PAAS_ROUTER_SOURCES_BACKOFF_MAX_S))


def _failed(host: Host, message: str, now: datetime) -> str:
    failures = host.router_sources_failures + 1
    wait = router_sources_backoff(failures)
    Host.objects.filter(pk=host.pk).update(
        router_sources_failures=failures, router_sources_error=message,
        router_sources_retry_at=now + wait,
    )  # fmt: skip
    log.warning("host %s: router sources not pushed (%d failure(s) in a row; next try in %d s): %s",
                host.name, failures, wait.total_seconds(), message)  # fmt: skip
    return f"not pushed: {message}"


def _record(host: Host, answer: RouterSources, actor: User | None) -> None:
    listed = ", ".join(answer.stored) or "no one"
    if answer.overridden_by:
        log.warning("host %s: %s", host.name, answer.message)
        audit_record(actor=actor, app=None, action="host.router_sources", target=host.name,
                     result=AuditResult.FAILED, detail=answer.message)  # fmt: skip
        return
    log.info("host %s: route ports answer %s", host.name, listed)
    audit_record(actor=actor, app=None, action="host.router_sources", target=host.name,
                 detail=f"route ports answer {listed}")  # fmt: skip


def hosts_router_sources_sync(*, now: datetime | None = None) -> dict[str, str]:
    """Push to every answering host whose recorded list is not the wanted
    one, unless it is backing off after a failed push; by host name, what
    happened (hosts already right or waiting are left out)."""
    now = now or timezone.now()
    report: dict[str, str] = {}
    # Answering: its last heartbeat worked (a failed one leaves last_error),
    # so a silent host does not hold the heartbeat's task up.
    hosts = Host.objects.filter(state__in=[HostState.READY, HostState.DRAINING], last_error="")
    hosts = hosts.exclude(last_heartbeat_at=None).exclude(router_sources_retry_at__gt=now)
    for host in hosts:
        try:
            if host.router_sources == route_sources(agent_url=host.agent_url):
                continue
            answer = host_router_sources_push(host=host)
        except PaasError as exc:
            report[host.name] = _failed(host, exc.message, now)
            continue
        report[host.name] = answer.message or "route ports answer " + (
            ", ".join(answer.in_effect) or "no one"
        )
    return report
