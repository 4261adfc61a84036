"""REST endpoints for an app's custom domains and their certificates.

    GET  /api/v1/apps/<name>/domains                      list
    POST /api/v1/apps/<name>/domains {"hostname"}         add
    DELETE /api/v1/apps/<name>/domains/<hostname>         remove
    PUT  /api/v1/apps/<name>/domains/<hostname>/certificate {"certificate", "key"}
    DELETE /api/v1/apps/<name>/domains/<hostname>/certificate

The key is never returned.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from paas.accounts.types import signed_in
from paas.api.auth import api_view
from paas.api.bodies import json_body
from paas.applications.selectors import app_for_user
from paas.router.domains import (
    domain_add,
    domain_clear_certificate,
    domain_remove,
    domain_set_certificate,
)
from paas.router.models import Domain
from paas.router.selectors import domain_of_app, domains_of_app


def _domain_json(domain: Domain) -> dict[str, Any]:
    certificate = None
    if domain.has_certificate and domain.cert_not_after is not None:
        certificate = {
            "names": domain.cert_names,
            "not_after": domain.cert_not_after.isoformat(),
            "fingerprint_sha256": domain.cert_fingerprint,
        }
    return {"hostname": domain.hostname, "certificate": certificate}


@api_view
@require_http_methods(["GET", "POST"])
def app_domains(request: HttpRequest, name: str) -> HttpResponse:
    if request.method == "GET":
        app = app_for_user(user=request.user, name=name)
        return JsonResponse({"domains": [_domain_json(d) for d in domains_of_app(app=app)]})
    app = app_for_user(user=request.user, name=name, action="deploy")
    hostname = str(json_body(request).get("hostname", ""))
    domain = domain_add(user=signed_in(request), app=app, hostname=hostname)
    return JsonResponse(_domain_json(domain), status=201)


@api_view
@require_http_methods(["DELETE"])
def app_domain(request: HttpRequest, name: str, hostname: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    domain_remove(user=signed_in(request), domain=domain_of_app(app=app, hostname=hostname))
    return HttpResponse(status=204)


@api_view
@require_http_methods(["PUT", "DELETE"])
def app_domain_certificate(request: HttpRequest, name: str, hostname: str) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    domain = domain_of_app(app=app, hostname=hostname)
    if request.method == "DELETE":
        domain = domain_clear_certificate(user=signed_in(request), domain=domain)
        return JsonResponse(_domain_json(domain))
    data = json_body(request)
    domain = domain_set_certificate(
        user=signed_in(request),
        domain=domain,
        cert_pem=str(data.get("certificate", "")),
        key_pem=str(data.get("key", "")),
    )
    return JsonResponse(_domain_json(domain))
