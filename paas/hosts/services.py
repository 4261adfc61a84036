"""Hosts: one-time join tokens, joining, and health from heartbeats.

An admin makes a join token (shown once, stored hashed). A new host presents
it once, with its agent's URL, and receives its own credential: the bearer
token its agent accepts from now on. Each host has its own, so a leaked
credential opens one host, not all of them.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from paas.applications.audit import audit_record
from paas.applications.models import AuditResult
from paas.core.errors import Conflict, PaasError, PermissionDenied, ValidationFailed
from paas.hosts.agent_client import AgentClient
from paas.hosts.models import Host, HostState, JoinToken
from paas.hosts.upstreams import check_agent_address

log = logging.getLogger(__name__)

JOIN_PREFIX = "join_"
HOST_NAME_MAX = 100


class JoinRefused(PaasError):
    code = "join_refused"
    status = 403


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def join_token_create(*, user: User | None, note: str = "") -> tuple[JoinToken, str]:
    """A one-time join token; the raw value is returned once and never stored."""
    if user is not None and not user.is_staff:
        raise PermissionDenied("Only platform admins can add hosts.")
    raw = JOIN_PREFIX + secrets.token_urlsafe(32)
    token = JoinToken.objects.create(
        digest=_digest(raw),
        prefix=raw[:12],
        note=note[:200],
        created_by=user,
        expires_at=timezone.now() + timedelta(seconds=settings.PAAS_JOIN_TOKEN_TTL_S),
    )
    audit_record(actor=user, app=None, action="host.join_token", target=token.prefix)
    return token, raw


def _validate_agent_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.port is None:
        raise ValidationFailed(
            "The agent URL must look like http://ADDRESS:PORT.", field="agent_url"
        )
    check_agent_address(url)
    return f"{parts.scheme}://{parts.netloc}"


def host_join(*, raw_token: str, name: str, agent_url: str) -> tuple[Host, str]:
    """Spend a join token: record the host and return its new credential."""
    if not name or len(name) > HOST_NAME_MAX or not name.replace("-", "").isalnum():
        raise ValidationFailed("A host name is letters, digits and '-'.", field="name")
    url = _validate_agent_url(agent_url)
    credential = secrets.token_urlsafe(32)
    with transaction.atomic():
        now = timezone.now()
        # Claimed with a conditional update: only one join can spend a token.
        spent = JoinToken.objects.filter(
            digest=_digest(raw_token), used_at=None, expires_at__gt=now
        ).update(used_at=now)
        if not spent:
            raise JoinRefused("This join token is unknown, used or expired; ask for a new one.")
        if Host.objects.filter(name=name).exclude(state=HostState.REMOVED).exists():
            raise Conflict(f"A host named {name!r} has already joined.", field="name")
        Host.objects.filter(name=name, state=HostState.REMOVED).delete()
        host = Host.objects.create(name=name, agent_url=url, token=credential)
        JoinToken.objects.filter(digest=_digest(raw_token)).update(host=host)
        audit_record(actor=None, app=None, action="host.join", target=name, detail=url)
    return host, credential


def host_client(host: Host, *, timeout_s: float = 30.0) -> AgentClient:
    return AgentClient(host.agent_url, host.token, timeout_s=timeout_s)


def host_heartbeat(*, host_id: int, reconcile_on_change: bool = False) -> HostState:
    """Ask the agent how it is; a host silent for longer than
    PAAS_HOST_TIMEOUT_S becomes unreachable (and ready again when it answers).
    With ``reconcile_on_change`` (the periodic heartbeat), such a change
    enqueues a reconcile at once: a lost host's instances move (and a
    returning host's stale containers go) without waiting for its period."""
    host = Host.objects.get(pk=host_id)
    if host.state == HostState.REMOVED:
        return HostState(host.state)
    now = timezone.now()
    try:
        info = host_client(host, timeout_s=5).info()
    except PaasError as exc:
        silent_since = host.last_heartbeat_at or host.created_at
        if (now - silent_since).total_seconds() > settings.PAAS_HOST_TIMEOUT_S:
            changed = Host.objects.filter(pk=host.pk, state=HostState.READY).update(
                state=HostState.UNREACHABLE, last_error=exc.message
            )
            if changed:
                log.warning("host %s is unreachable: %s", host.name, exc.message)
                audit_record(actor=None, app=None, action="host.unreachable",
                             target=host.name, result=AuditResult.FAILED,
                             detail=exc.message)  # fmt: skip
                _reconcile_soon(reconcile_on_change)
        else:
            Host.objects.filter(pk=host.pk).update(last_error=exc.message)
        return HostState(Host.objects.get(pk=host.pk).state)
    Host.objects.filter(pk=host.pk).update(
        memory_bytes=info.memory_bytes,
        cpus=info.cpus,
        agent_version=info.api_version,
        last_heartbeat_at=now,
        last_error="",
    )
    if Host.objects.filter(pk=host.pk, state=HostState.UNREACHABLE).update(state=HostState.READY):
        log.warning("host %s answers again", host.name)
        _reconcile_soon(reconcile_on_change)
    return HostState(Host.objects.get(pk=host.pk).state)


def _reconcile_soon(wanted: bool) -> None:
    """So the time to move a lost host's instances is PAAS_HOST_TIMEOUT_S
    plus at most one heartbeat period, not also a reconcile period."""
    if not wanted:
        return
    from paas.hosts.tasks import reconcile_all  # tasks import this module

    transaction.on_commit(reconcile_all.delay)


def hosts_heartbeat_all(*, reconcile_on_change: bool = False) -> dict[str, str]:
    hosts = Host.objects.exclude(state=HostState.REMOVED).values_list("pk", "name")
    return {
        name: host_heartbeat(host_id=pk, reconcile_on_change=reconcile_on_change)
        for pk, name in hosts
    }


def host_set_state(*, user: User, host: Host, state: HostState) -> None:
    """Drain (no new instances), make ready again, or remove a host."""
    if not user.is_staff:
        raise PermissionDenied("Only platform admins can change hosts.")
    Host.objects.filter(pk=host.pk).update(state=state)
    audit_record(actor=user, app=None, action=f"host.{state}", target=host.name)
