"""Sign-in throttling, per account and per address.

Every failed sign-in is a row (username as typed, address, time). Before a
password is even checked, the attempt is refused when the account had
``PAAS_SIGNIN_MAX_PER_ACCOUNT`` failures within ``PAAS_SIGNIN_WINDOW_S``
(from any address: guessing one person's password from many machines), or
the address had ``PAAS_SIGNIN_MAX_PER_ADDRESS`` (one machine trying many
accounts). The window slides: a refusal lasts until the oldest counted
failure leaves it, and refused attempts are not recorded, so a lock never
extends itself and never outlives the window. The per-address limit is the
larger one: a person who mistyped one account's password a few times can
still sign in to another from the same address.

A successful sign-in forgets the account's failures (not the address's).
Rows older than the window are deleted as new ones come. The check and
the record are not one transaction: attempts running at the same moment
may pass the limit by their number (Django runs sync views one at a time
per daphne process, so that is the number of web processes).
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from paas.accounts.models import SignInFailure

UNKNOWN_ADDRESS = "0.0.0.0"


def signin_address(remote_addr: str | None) -> str:
    """The client's address as the server saw it; a socket with no IP
    address (a unix socket) counts as one shared address."""
    try:
        return str(ipaddress.ip_address(remote_addr or ""))
    except ValueError:
        return UNKNOWN_ADDRESS


def _key(username: str) -> str:
    return username.strip().lower()[:150]


def _window() -> timedelta:
    return timedelta(seconds=settings.PAAS_SIGNIN_WINDOW_S)


def _retry_at(failures: QuerySet[SignInFailure], limit: int, now: datetime) -> datetime | None:
    """When the next try is allowed, if ``failures`` are at ``limit`` now."""
    recent = list(
        failures.filter(at__gt=now - _window()).order_by("-at").values_list("at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return None
    return recent[-1] + _window()


def _wait_text(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))} seconds"
    minutes = math.ceil(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def signin_refusal(*, username: str, address: str, now: datetime | None = None) -> str | None:
    """The message refusing this attempt, or None when it may go ahead."""
    now = now or timezone.now()
    by_account = _retry_at(
        SignInFailure.objects.filter(username=_key(username)),
        settings.PAAS_SIGNIN_MAX_PER_ACCOUNT,
        now,
    )
    if by_account is not None:
        wait = _wait_text((by_account - now).total_seconds())
        return f"Too many failed sign-ins for this account. Try again in {wait}."
    by_address = _retry_at(
        SignInFailure.objects.filter(address=address), settings.PAAS_SIGNIN_MAX_PER_ADDRESS, now
    )
    if by_address is not None:
        wait = _wait_text((by_address - now).total_seconds())
        return f"Too many failed sign-ins from your address. Try again in {wait}."
    return None


def signin_failed(*, username: str, address: str, now: datetime | None = None) -> None:
    now = now or timezone.now()
    SignInFailure.objects.filter(at__lte=now - _window()).delete()
    SignInFailure.objects.create(username=_key(username), address=address, at=now)


def signin_succeeded(*, username: str) -> None:
    SignInFailure.objects.filter(username=_key(username)).delete()
