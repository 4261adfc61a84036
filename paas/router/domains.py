"""Services for an app's custom domains and their certificates.

A hostname is normalised (trimmed, lowercased, a trailing dot dropped, an
internationalised name turned into its "xn--" form), checked as a DNS name,
refused under PAAS_DOMAIN (those names belong to the platform's apps), and
unique across the platform. A certificate is checked by
:func:`paas.router.certs.tls_cert_load` before it is stored. Changing a
domain does not touch nginx by itself: the deploy code applies the routes
(``router_apply``) from the desired state, which now includes it.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from paas.accounts.services import require_role
from paas.applications.models import App
from paas.core.errors import Conflict, ValidationFailed
from paas.router import keys
from paas.router.certs import tls_cert_load
from paas.router.models import Domain
from paas.router.routes import hostname_problem


def hostname_normalise(raw: str) -> str:
    name = raw.strip().rstrip(".").lower() if isinstance(raw, str) else ""
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationFailed(
            f"{raw[:80]!r} is not a valid domain name.", field="hostname"
        ) from None
    problem = hostname_problem(name)
    if problem:
        raise ValidationFailed(f"Domain refused: {problem}.", field="hostname")
    platform = settings.PAAS_DOMAIN.lower()
    if name == platform or name.endswith("." + platform):
        raise ValidationFailed(
            f"{name} is under the platform's domain {platform}: apps get "
            f"<app>.{platform} by their name; add a domain of your own.",
            field="hostname",
        )
    return name


def domain_add(*, user: User, app: App, hostname: str) -> Domain:
    require_role(user=user, team_id=app.team_id, action="deploy")
    name = hostname_normalise(hostname)
    try:
        with transaction.atomic():
            return Domain.objects.create(app=app, hostname=name)
    except IntegrityError:
        # Another team's app may hold it: say only that it is taken.
        raise Conflict(f"{name} is already in use on this platform.", field="hostname") from None


def domain_remove(*, user: User, domain: Domain) -> None:
    require_role(user=user, team_id=domain.app.team_id, action="deploy")
    domain.delete()


def domain_set_certificate(
    *, user: User, domain: Domain, cert_pem: str | bytes, key_pem: str | bytes
) -> Domain:
    """Store a checked certificate and key for ``domain`` (replacing any)."""
    require_role(user=user, team_id=domain.app.team_id, action="deploy")
    cert = tls_cert_load(cert_pem=cert_pem, key_pem=key_pem, hostnames=[domain.hostname])
    domain.cert_pem = cert.cert_pem
    domain.key_sealed = keys.seal(cert.key_pem)
    domain.cert_names = list(cert.names)
    domain.cert_fingerprint = cert.fingerprint
    domain.cert_not_after = cert.not_after
    domain.save()
    return domain


def domain_clear_certificate(*, user: User, domain: Domain) -> Domain:
    require_role(user=user, team_id=domain.app.team_id, action="deploy")
    domain.cert_pem = domain.key_sealed = domain.cert_fingerprint = ""
    domain.cert_names = []
    domain.cert_not_after = None
    domain.save()
    return domain
