"""Hosts, for platform admins: list, show, drain/ready/remove, join tokens;
and the join itself, which an agent's host calls with a join token (no
user account, so no bearer token)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from paas.accounts.types import signed_in
from paas.api.pagination import PageParams, paged
from paas.api.responses import answers
from paas.api.schemas import (
    HostJoined,
    HostJoinIn,
    HostList,
    HostOut,
    HostStateIn,
    JoinTokenIn,
    JoinTokenOut,
    PathName,
)
from paas.hosts.models import Host, HostState
from paas.hosts.route_sources import route_sources
from paas.hosts.selectors import host_for_admin, hosts_for_admin
from paas.hosts.services import host_join, host_set_state, join_token_check, join_token_create

router = Router(tags=["hosts"])


def host_json(host: Host) -> dict[str, Any]:
    """Never the host's credential."""
    beat = host.last_heartbeat_at
    return {
        "name": host.name,
        "agent_url": host.agent_url,
        "tls_fingerprint": host.tls_fingerprint,
        "state": host.state,
        "memory_bytes": host.memory_bytes,
        "cpus": host.cpus,
        "agent_version": host.agent_version,
        "last_heartbeat_at": beat.isoformat() if beat else None,
        "last_error": host.last_error,
        "router_sources": host.router_sources,
        "created_at": host.created_at.isoformat(),
    }


@router.get("/hosts", response=answers(200, HostList))
def host_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    """Admins only."""
    rows, paging = paged(hosts_for_admin(user=request.user), page)
    return {"hosts": [host_json(h) for h in rows], **paging}


@router.post("/hosts/join-tokens", response=answers(201, JoinTokenOut))
def join_token_new(request: HttpRequest, body: JoinTokenIn) -> Status[dict[str, Any]]:
    """A one-time token for a new host, or with ``rejoin`` for a joined host
    whose agent's certificate was replaced (admins only); shown once."""
    rejoin = host_for_admin(user=request.user, name=body.rejoin) if body.rejoin else None
    token, raw = join_token_create(user=signed_in(request), note=body.note, rejoin=rejoin)
    return Status(201, {"join_token": raw, "expires_at": token.expires_at.isoformat()})


@router.post("/hosts/join", auth=None, response=answers(201, HostJoined))
def host_join_view(request: HttpRequest, body: HostJoinIn) -> Status[dict[str, Any]]:
    """An agent's host joins with a one-time join token and gets its
    credential and who its route ports answer."""
    # The token first: no route lookup (which tells the caller how this
    # machine reaches the address it names, and probes it) for a stranger.
    join_token_check(raw_token=body.join_token)
    # Then a host the router has no route to is refused before the token is spent.
    sources = route_sources(agent_url=body.agent_url)
    host, credential = host_join(
        raw_token=body.join_token,
        name=body.name,
        agent_url=body.agent_url,
        tls_fingerprint=body.tls_fingerprint,
    )
    return Status(201, {"host": host.name, "credential": credential, "router_sources": sources})


@router.get("/hosts/{host}", response=answers(200, HostOut))
def host_show(request: HttpRequest, host: PathName) -> dict[str, Any]:
    return host_json(host_for_admin(user=request.user, name=host))


@router.post("/hosts/{host}/state", response=answers(200, HostOut))
def host_state(request: HttpRequest, host: PathName, body: HostStateIn) -> dict[str, Any]:
    """ready, draining (no new instances) or removed. Admins only."""
    found = host_for_admin(user=request.user, name=host)
    host_set_state(user=signed_in(request), host=found, state=HostState(body.state))
    found.refresh_from_db()
    return host_json(found)
