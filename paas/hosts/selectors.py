"""Reads of hosts: platform admins (staff) only; hosts belong to no team."""

from __future__ import annotations

from django.db.models import QuerySet

from paas.accounts.types import AnyUser
from paas.core.errors import NotFound, PermissionDenied
from paas.hosts.models import Host


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
