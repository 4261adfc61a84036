"""Hosts: one-time join tokens, joining, and health from heartbeats.

An admin makes a join token (shown once, stored hashed). A new host presents
it once, with its agent's URL and the fingerprint of the certificate its
agent serves, and receives its own credential: the bearer token its agent
accepts from now on. Each host has its own, so a leaked credential opens one
host, not all of them. The fingerprint is pinned: every call to the agent
checks its certificate against it (``paas/hosts/agent_client.py``), and a
host whose agent presents another is not trusted (marked unreachable, its
instances moved) until it presents the pinned one again or joins again.

Joining again, after the agent's certificate was replaced on purpose, takes
a re-join token made for that host (``host_join_token --rejoin NAME``): it
replaces the host's URL, pin and credential and keeps its instances. A plain
join token never replaces a joined host's pin: whoever holds one could
otherwise take over any host's traffic.
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
from paas.hosts.agent_client import AgentClient, AgentUntrusted
from paas.hosts.live import host_changed
from paas.hosts.models import DesiredState, Host, HostState, Instance, JoinToken
from paas.hosts.upstreams import check_agent_address
from runtime_agent.host.tls import BadFingerprint, parse_fingerprint

log = logging.getLogger(__name__)

JOIN_PREFIX = "join_"
HOST_NAME_MAX = 100


class JoinRefused(PaasError):
    code = "join_refused"
    status = 403


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def join_token_create(
    *, user: User | None, note: str = "", rejoin: Host | None = None
) -> tuple[JoinToken, str]:
    """A one-time join token (for joining ``rejoin`` again, if given); the
    raw value is returned once and never stored."""
    if user is not None and not user.is_staff:
        raise PermissionDenied("Only platform admins can add hosts.")
    if rejoin is not None and rejoin.state == HostState.REMOVED:
        raise ValidationFailed(f"Host {rejoin.name!r} was removed: join it as a new host.")
    raw = JOIN_PREFIX + secrets.token_urlsafe(32)
    token = JoinToken.objects.create(
        digest=_digest(raw),
        prefix=raw[:12],
        note=note[:200],
        created_by=user,
        expires_at=timezone.now() + timedelta(seconds=settings.PAAS_JOIN_TOKEN_TTL_S),
        rejoin=rejoin,
    )
    action = "host.rejoin_token" if rejoin else "host.join_token"
    audit_record(actor=user, app=None, action=action, target=token.prefix,
                 detail=rejoin.name if rejoin else "")  # fmt: skip
    return token, raw


def _validate_agent_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.port is None:
        raise ValidationFailed(
            "The agent URL must look like https://ADDRESS:PORT (agents serve their API "
            "over TLS only).",
            field="agent_url",
        )
    check_agent_address(url)
    return f"{parts.scheme}://{parts.netloc}"


def _validate_fingerprint(fingerprint: str) -> str:
    try:
        return parse_fingerprint(fingerprint)
    except BadFingerprint as exc:
        raise ValidationFailed(f"The agent's {exc.message}.", field="tls_fingerprint") from None


JOIN_REFUSED = "This join token is unknown, used or expired; ask for a new one."


def join_token_check(*, raw_token: str) -> None:
    """Refuse a join token that could not be spent, before the join looks at
    anything else: a caller without a valid token learns nothing (not which
    address this machine reaches a given host from) and makes this machine
    look up nothing. :func:`host_join` checks again as it spends it."""
    usable = JoinToken.objects.filter(
        digest=_digest(raw_token), used_at=None, expires_at__gt=timezone.now()
    )
    if not usable.exists():
        raise JoinRefused(JOIN_REFUSED)


def host_join(
    *, raw_token: str, name: str, agent_url: str, tls_fingerprint: str
) -> tuple[Host, str]:
    """Spend a join token: record the host (or, with a re-join token, update
    it), pin its agent's certificate and return its new credential."""
    if not name or len(name) > HOST_NAME_MAX or not name.replace("-", "").isalnum():
        raise ValidationFailed("A host name is letters, digits and '-'.", field="name")
    url = _validate_agent_url(agent_url)
    pin = _validate_fingerprint(tls_fingerprint)
    credential = secrets.token_urlsafe(32)
    with transaction.atomic():
        now = timezone.now()
        # Claimed with a conditional update: only one join can spend a token.
        spent = JoinToken.objects.filter(
            digest=_digest(raw_token), used_at=None, expires_at__gt=now
        ).update(used_at=now)
        if not spent:
            raise JoinRefused(JOIN_REFUSED)
        token = JoinToken.objects.select_related("rejoin").get(digest=_digest(raw_token))
        if token.rejoin is not None:
            host = _rejoin(token.rejoin, name=name, url=url, pin=pin, credential=credential)
        else:
            host = _join_new(name=name, url=url, pin=pin, credential=credential)
        JoinToken.objects.filter(pk=token.pk).update(host=host)
        _router_sources_unconfirmed(host)
    return host, credential


def _router_sources_unconfirmed(host: Host) -> None:
    """A (re-)joined agent has confirmed no router sources yet: it gets them
    pushed once it answers (paas/hosts/router_push.py)."""
    Host.objects.filter(pk=host.pk).update(router_sources=None)
    host.router_sources = None
    transaction.on_commit(lambda: _push_router_sources_soon(host.pk))


def _push_router_sources_soon(host_id: int) -> None:
    from paas.hosts.tasks import push_router_sources  # tasks import this module

    try:
        push_router_sources.delay(host_id)
    except Exception:  # the broker is down: the heartbeat's sync pushes them later
        log.warning("could not enqueue the router sources push of host %s", host_id,
                    exc_info=True)  # fmt: skip


def _join_new(*, name: str, url: str, pin: str, credential: str) -> Host:
    if Host.objects.filter(name=name).exclude(state=HostState.REMOVED).exists():
        raise Conflict(
            f"A host named {name!r} has already joined. To join it again (its agent's "
            f"certificate changed, say), use a re-join token: "
            f"manage.py host_join_token --rejoin {name}",
            field="name",
        )
    Host.objects.filter(name=name, state=HostState.REMOVED).delete()
    host = Host.objects.create(name=name, agent_url=url, token=credential, tls_fingerprint=pin)
    audit_record(actor=None, app=None, action="host.join", target=name,
                 detail=f"{url} certificate {pin}")  # fmt: skip
    return host


def _rejoin(host: Host, *, name: str, url: str, pin: str, credential: str) -> Host:
    if host.name != name:
        raise JoinRefused(f"This re-join token is for host {host.name!r}, not {name!r}.")
    if host.state == HostState.REMOVED:
        raise JoinRefused(f"Host {name!r} was removed since: join it with a plain join token.")
    Host.objects.filter(pk=host.pk).update(
        agent_url=url, tls_fingerprint=pin, token=credential, last_error=""
    )
    detail = _pin_detail(url, pin, host.tls_fingerprint)
    audit_record(actor=None, app=None, action="host.rejoin", target=name, detail=detail)
    host.refresh_from_db()
    return host


def _pin_detail(url: str, pin: str, old: str) -> str:
    return f"{url} certificate {pin} (was {old or 'none'})"


def host_register_local(*, name: str, agent_url: str, tls_fingerprint: str) -> Host:
    """The local agent as host ``name`` (scripts/up, every start): joined the
    first time, its URL and pin brought up to date after. Trusted without a
    token because the fingerprint comes from the agent's certificate on this
    very machine, read by root."""
    url = _validate_agent_url(agent_url)
    pin = _validate_fingerprint(tls_fingerprint)
    host = Host.objects.filter(name=name).exclude(state=HostState.REMOVED).first()
    if host is None:
        _, raw = join_token_create(user=None, note=f"local agent {name}")
        host, _ = host_join(raw_token=raw, name=name, agent_url=url, tls_fingerprint=pin)
        return host
    if (host.agent_url, host.tls_fingerprint) != (url, pin):
        Host.objects.filter(pk=host.pk).update(agent_url=url, tls_fingerprint=pin)
        detail = _pin_detail(url, pin, host.tls_fingerprint)
        audit_record(actor=None, app=None, action="host.repin", target=name, detail=detail)
        host.refresh_from_db()
    return host


def host_client(host: Host, *, timeout_s: float = 30.0) -> AgentClient:
    return AgentClient(
        host.agent_url, host.token, fingerprint=host.tls_fingerprint, timeout_s=timeout_s
    )


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
    except AgentUntrusted as exc:
        _host_untrusted(host, exc.message, reconcile_on_change=reconcile_on_change)
        return HostState(Host.objects.get(pk=host.pk).state)
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
        host_changed(host_id=host.pk)
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
    host_changed(host_id=host.pk)
    return HostState(Host.objects.get(pk=host.pk).state)


def _reconcile_soon(wanted: bool) -> None:
    """So the time to move a lost host's instances is PAAS_HOST_TIMEOUT_S
    plus at most one heartbeat period, not also a reconcile period."""
    if not wanted:
        return
    from paas.hosts.tasks import reconcile_all  # tasks import this module

    transaction.on_commit(reconcile_all.delay)


def _host_untrusted(host: Host, message: str, *, reconcile_on_change: bool) -> None:
    """An agent that is not the one that joined gets no more work at once
    (no waiting for the timeout): out of the ready hosts, so the reconcile
    moves its instances, until it presents the pinned certificate again."""
    Host.objects.filter(pk=host.pk).update(last_error=message)
    changed = Host.objects.filter(pk=host.pk, state=HostState.READY).update(
        state=HostState.UNREACHABLE
    )
    host_changed(host_id=host.pk)
    if changed:
        log.error("host %s is not trusted: %s", host.name, message)
        audit_record(actor=None, app=None, action="host.untrusted", target=host.name,
                     result=AuditResult.FAILED, detail=message)  # fmt: skip
        _reconcile_soon(reconcile_on_change)


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
    host_changed(host_id=host.pk)
    audit_record(actor=user, app=None, action=f"host.{state}", target=host.name)


def host_remove(*, user: User, host: Host) -> None:
    """Remove a host once nothing is meant to run on it: the reconcile moves
    instances off a draining host, but not off a removed one, so removing a
    host that still has instances would strand them."""
    if not user.is_staff:
        raise PermissionDenied("Only platform admins can change hosts.")
    placed = Instance.objects.filter(host=host, desired=DesiredState.RUNNING).count()
    if placed:
        raise Conflict(
            f"{host.name} still has {placed} instance(s): drain it first, and remove it "
            "once the reconcile has moved them to other hosts.",
        )
    host_set_state(user=user, host=host, state=HostState.REMOVED)
