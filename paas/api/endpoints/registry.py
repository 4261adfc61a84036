"""An app's credentials for pulling its images from other registries
(``host[:port]``); a password is never shown again once entered."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router

from paas.accounts.types import signed_in
from paas.api.responses import ERRORS, answers
from paas.api.schemas import (
    PathName,
    RegistryCredentialIn,
    RegistryCredentialList,
    RegistryCredentialSaved,
)
from paas.applications.registry_credentials import (
    registry_credential_delete,
    registry_credential_set,
    registry_credentials_of,
)
from paas.applications.selectors import app_for_user

router = Router(tags=["registry credentials"])


@router.get("/apps/{name}/registry-credentials", response=answers(200, RegistryCredentialList))
def registry_credential_list(request: HttpRequest, name: PathName) -> dict[str, Any]:
    """Registries and usernames."""
    app = app_for_user(user=request.user, name=name)
    return {"registry_credentials": registry_credentials_of(app=app)}


@router.put(
    "/apps/{name}/registry-credentials/{registry}", response=answers(200, RegistryCredentialSaved)
)
def registry_credential_put(
    request: HttpRequest, name: PathName, registry: PathName, body: RegistryCredentialIn
) -> dict[str, Any]:
    """Store (or replace) the credential for ``registry`` (host[:port])."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    saved = registry_credential_set(
        user=signed_in(request), app=app, registry=registry,
        username=body.username, password=body.password,
    )  # fmt: skip
    return {"registry": saved.registry, "username": saved.username}


@router.delete("/apps/{name}/registry-credentials/{registry}", response={204: None, **ERRORS})
def registry_credential_remove(request: HttpRequest, name: PathName, registry: PathName) -> Any:
    app = app_for_user(user=request.user, name=name, action="deploy")
    registry_credential_delete(user=signed_in(request), app=app, registry=registry)
    return HttpResponse(status=204)
