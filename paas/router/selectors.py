"""Reads for the router: an app's hostnames and the Routes that serve it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from django.conf import settings

from paas.applications.models import App
from paas.core.errors import NotFound
from paas.router import keys
from paas.router.models import Domain
from paas.router.routes import Route, TlsCert, Upstream, app_routes


def app_hostnames(*, app: App) -> list[str]:
    """``<app>.<PAAS_DOMAIN>`` first, then the custom domains."""
    return [
        f"{app.name}.{settings.PAAS_DOMAIN}",
        *(d.hostname for d in Domain.objects.filter(app=app)),
    ]


def domain_tls_cert(*, domain: Domain) -> TlsCert | None:
    if not domain.has_certificate or domain.cert_not_after is None:
        return None
    return TlsCert(
        cert_pem=domain.cert_pem,
        key_pem=keys.unseal(domain.key_sealed),
        names=tuple(domain.cert_names),
        not_after=domain.cert_not_after,
        fingerprint=domain.cert_fingerprint,
    )


def app_routes_for(*, app: App, upstreams: Iterable[Upstream]) -> list[Route]:
    """The Routes of ``app`` to ``upstreams`` (its healthy web instances):
    its platform name and every custom domain, those with a certificate over
    HTTPS. What the deploy code hands to ``router_apply`` for each app."""
    return _routes(app, list(Domain.objects.filter(app=app)), upstreams)


def routes_for_apps(
    *, apps: Iterable[App], upstreams: Mapping[int, Iterable[Upstream]]
) -> list[Route]:
    """:func:`app_routes_for` for many apps (``upstreams`` by app id), with
    one query for all their domains."""
    apps = list(apps)
    domains: dict[int, list[Domain]] = defaultdict(list)
    for domain in Domain.objects.filter(app__in=apps):
        domains[domain.app_id].append(domain)
    routes: list[Route] = []
    for app in apps:
        routes += _routes(app, domains[app.pk], upstreams.get(app.pk, ()))
    return routes


def _routes(app: App, domains: list[Domain], upstreams: Iterable[Upstream]) -> list[Route]:
    certificates = {}
    for domain in domains:
        cert = domain_tls_cert(domain=domain)
        if cert is not None:
            certificates[domain.hostname] = cert
    hostnames = [f"{app.name}.{settings.PAAS_DOMAIN}", *(d.hostname for d in domains)]
    return app_routes(
        app=app.name, hostnames=hostnames, upstreams=upstreams, certificates=certificates
    )


def domain_of_app(*, app: App, hostname: str) -> Domain:
    domain = Domain.objects.filter(app=app, hostname=hostname.strip().lower()).first()
    if domain is None:
        raise NotFound(f"{app.name} has no domain {hostname[:253]!r}.")
    return domain


def domains_of_app(*, app: App) -> list[Domain]:
    return list(Domain.objects.filter(app=app))


def app_url(*, app: App) -> str:
    """Where the app answers: ``http://<app>.<PAAS_DOMAIN>`` on the router's port."""
    port = settings.PAAS_ROUTER_PORT
    return f"http://{app.name}.{settings.PAAS_DOMAIN}{'' if port == 80 else f':{port}'}"
