"""Credentials for registries other than the platform's, per app, to deploy
images from them (``POST /api/v1/apps/<app>/releases {"image": ...}``).

Stored like build secrets: the password sealed with a key derived from
SECRET_KEY, listed by registry and username only, never shown back and
never written to a log or an audit entry. The worker uses it to resolve the
image's digest when the release is made, and the agent that pulls the
image gets it beside that one create (paas.hosts.pull_auth).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from paas.accounts.services import require_role
from paas.applications.audit import audit_record
from paas.applications.models import App, RegistryCredential
from paas.builds.secretbox import seal, unseal
from paas.core.errors import NotFound, ValidationFailed
from runtime_agent.wire import REGISTRY_HOST_RE

MAX_PER_APP = 20
_MAX_USERNAME = 255
_MAX_PASSWORD = 4096


def _check_registry(registry: str) -> str:
    registry = registry.strip().lower()
    if not REGISTRY_HOST_RE.fullmatch(registry):
        raise ValidationFailed(
            "A registry is a host name or address with an optional port, like "
            "registry.example.com or 10.0.0.5:5000.",
            field="registry",
        )
    if registry == settings.PAAS_REGISTRY.lower():
        raise ValidationFailed(
            "The platform's own registry needs no credentials: agents get a pull "
            "token for the app's image.",
            field="registry",
        )
    return registry


def _check_text(value: Any, *, field: str, longest: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"The {field} is required.", field=field)
    if len(value) > longest or any(c in value for c in "\r\n\0"):
        raise ValidationFailed(
            f"The {field} must be at most {longest} characters on one line.", field=field
        )
    if field == "username" and ":" in value:
        raise ValidationFailed("A registry username cannot contain ':'.", field=field)
    return value


@transaction.atomic
def registry_credential_set(
    *, user: Any, app: App, registry: str, username: Any, password: Any
) -> RegistryCredential:
    """Store (or replace) the app's credential for ``registry``."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    registry = _check_registry(registry)
    username = _check_text(username, field="username", longest=_MAX_USERNAME)
    password = _check_text(password, field="password", longest=_MAX_PASSWORD)
    exists = RegistryCredential.objects.filter(app=app, registry=registry).exists()
    if not exists and RegistryCredential.objects.filter(app=app).count() >= MAX_PER_APP:
        raise ValidationFailed(f"An app can hold at most {MAX_PER_APP} registry credentials.")
    saved, _ = RegistryCredential.objects.update_or_create(
        app=app, registry=registry, defaults={"username": username, "sealed": seal(password)}
    )
    audit_record(actor=user, app=app, action="registry_credential.set", target=registry,
                 detail=f"user {username}")  # fmt: skip
    return saved


@transaction.atomic
def registry_credential_delete(*, user: Any, app: App, registry: str) -> None:
    require_role(user=user, team_id=app.team_id, action="deploy")
    deleted, _ = RegistryCredential.objects.filter(
        app=app, registry=registry.strip().lower()
    ).delete()
    if not deleted:
        raise NotFound(f"{app.name} has no credential for {registry}.")
    audit_record(actor=user, app=app, action="registry_credential.delete", target=registry)


def registry_credentials_of(*, app: App) -> list[dict[str, str]]:
    """Registry and username of each credential; never the password."""
    return [
        {"registry": c.registry, "username": c.username, "updated_at": c.updated_at.isoformat()}
        for c in RegistryCredential.objects.filter(app=app)
    ]


def registry_credential_for(*, app: App, registry: str) -> tuple[str, str] | None:
    """(username, password) the app stored for ``registry``, or None."""
    found = RegistryCredential.objects.filter(app=app, registry=registry.lower()).first()
    if found is None:
        return None
    password = unseal(found.sealed, name=found.registry, what="The registry credential for")
    return found.username, password
