"""The app's "Domains and HTTPS" page: add and remove custom domains, upload
or remove a domain's certificate, see when each certificate expires."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from paas.accounts.services import role_allows
from paas.accounts.types import signed_in
from paas.applications.models import App
from paas.applications.selectors import app_for_user
from paas.core.errors import NotFound, PaasError
from paas.router.domains import (
    domain_add,
    domain_clear_certificate,
    domain_remove,
    domain_set_certificate,
)
from paas.router.selectors import domain_of_app, domains_of_app

EXPIRY_WARNING = timedelta(days=14)


@login_required
@require_http_methods(["GET", "POST"])
def app_domains(request: HttpRequest, name: str) -> HttpResponse:
    try:
        app = app_for_user(user=request.user, name=name)
    except NotFound as exc:
        raise Http404(exc.message) from None
    if request.method == "POST":
        try:
            messages.success(request, _act(request, app))
        except PaasError as exc:
            messages.error(request, exc.message)
        return redirect("app-domains", name=app.name)
    now = timezone.now()
    rows = [
        {
            "domain": d,
            "expired": d.cert_not_after is not None and d.cert_not_after <= now,
            "expires_soon": d.cert_not_after is not None
            and now < d.cert_not_after <= now + EXPIRY_WARNING,
        }
        for d in domains_of_app(app=app)
    ]
    context = {
        "app": app,
        "rows": rows,
        "http_port": settings.PAAS_ROUTER_PORT,
        "https_port": settings.PAAS_ROUTER_HTTPS_PORT,
        "can_deploy": role_allows(user=request.user, team_id=app.team_id, action="deploy"),
    }
    return render(request, "front/app_domains.html", context)


def _act(request: HttpRequest, app: App) -> str:
    """Do what the form asked; the message to show."""
    user, post = signed_in(request), request.POST
    action = post.get("action", "")
    if action == "add":
        domain = domain_add(user=user, app=app, hostname=post.get("hostname", ""))
        return f"Added {domain.hostname}. Point its DNS at this platform's router."
    domain = domain_of_app(app=app, hostname=post.get("hostname", ""))
    if action == "remove":
        domain_remove(user=user, domain=domain)
        return f"Removed {domain.hostname}."
    if action == "certificate":
        domain_set_certificate(
            user=user,
            domain=domain,
            cert_pem=post.get("certificate", ""),
            key_pem=post.get("key", ""),
        )
        return f"{domain.hostname} is served over HTTPS from the next deploy of the routes."
    if action == "clear-certificate":
        domain_clear_certificate(user=user, domain=domain)
        return f"Removed the certificate of {domain.hostname}."
    raise PaasError("Unknown action.")
