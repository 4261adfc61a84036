"""An app's custom domains and their certificates. The key is never returned."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from paas.accounts.types import signed_in
from paas.api.pagination import PageParams, paged
from paas.api.responses import ERRORS, answers
from paas.api.schemas import CertificateIn, DomainIn, DomainList, DomainOut, PathName
from paas.applications.selectors import app_for_user
from paas.router.domains import (
    domain_add,
    domain_clear_certificate,
    domain_remove,
    domain_set_certificate,
)
from paas.router.models import Domain
from paas.router.selectors import domain_of_app, domains_of_app

router = Router(tags=["domains"])


def domain_json(domain: Domain) -> dict[str, Any]:
    certificate = None
    if domain.has_certificate and domain.cert_not_after is not None:
        certificate = {
            "names": domain.cert_names,
            "not_after": domain.cert_not_after.isoformat(),
            "fingerprint_sha256": domain.cert_fingerprint,
        }
    return {"hostname": domain.hostname, "certificate": certificate}


@router.get("/apps/{name}/domains", response=answers(200, DomainList))
def domain_list(request: HttpRequest, name: PathName, page: Query[PageParams]) -> dict[str, Any]:
    app = app_for_user(user=request.user, name=name)
    rows, paging = paged(domains_of_app(app=app), page)
    return {"domains": [domain_json(d) for d in rows], **paging}


@router.post("/apps/{name}/domains", response=answers(201, DomainOut))
def domain_new(request: HttpRequest, name: PathName, body: DomainIn) -> Status[Any]:
    """Route this hostname to the app too (point its DNS at the router)."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    domain = domain_add(user=signed_in(request), app=app, hostname=body.hostname)
    return Status(201, domain_json(domain))


@router.delete("/apps/{name}/domains/{hostname}", response={204: None, **ERRORS})
def domain_delete(request: HttpRequest, name: PathName, hostname: PathName) -> HttpResponse:
    app = app_for_user(user=request.user, name=name, action="deploy")
    domain_remove(user=signed_in(request), domain=domain_of_app(app=app, hostname=hostname))
    return HttpResponse(status=204)


@router.put("/apps/{name}/domains/{hostname}/certificate", response=answers(200, DomainOut))
def certificate_put(
    request: HttpRequest, name: PathName, hostname: PathName, body: CertificateIn
) -> dict[str, Any]:
    """Serve HTTPS for this hostname with your certificate and key (PEM)."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    domain = domain_set_certificate(
        user=signed_in(request),
        domain=domain_of_app(app=app, hostname=hostname),
        cert_pem=body.certificate,
        key_pem=body.key,
    )
    return domain_json(domain)


@router.delete("/apps/{name}/domains/{hostname}/certificate", response=answers(200, DomainOut))
def certificate_delete(request: HttpRequest, name: PathName, hostname: PathName) -> Any:
    app = app_for_user(user=request.user, name=name, action="deploy")
    domain = domain_of_app(app=app, hostname=hostname)
    return domain_json(domain_clear_certificate(user=signed_in(request), domain=domain))
