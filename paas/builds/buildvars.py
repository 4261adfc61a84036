"""Per-app build configuration: build arguments (Dockerfile ARG values,
shown) and build secrets (files under /run/secrets in RUN steps, write-only:
once entered, only their names are ever shown).

Services and selectors in one small module: the callers (pages, API, the
build task) check the user's role on the app first."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from paas.applications.models import App
from paas.builds.engine.outbound import SECRET_NAME_RE  # also a file name under /run/secrets
from paas.builds.models import BuildArg, BuildSecret
from paas.builds.secretbox import seal, unseal
from paas.core.errors import NotFound, ValidationFailed

ARG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE_BYTES = 64 * 1024
MAX_PER_APP = 100


def _check_value(value: Any, *, what: str, required: bool) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(f"The {what} value must be a string.", field="value")
    if required and not value:
        raise ValidationFailed(f"The {what} value is empty.", field="value")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ValidationFailed(f"The {what} value is larger than 64 KiB.", field="value")
    if "\0" in value:
        raise ValidationFailed(f"The {what} value contains a NUL byte.", field="value")
    return value


def _check_room(app: App, model: type[BuildArg] | type[BuildSecret], name: str) -> None:
    others = model.objects.filter(app=app).exclude(name=name).count()
    if others >= MAX_PER_APP:
        raise ValidationFailed(f"An app can have at most {MAX_PER_APP} of these.", field="name")


def build_arg_set(*, app: App, name: str, value: Any) -> BuildArg:
    if not isinstance(name, str) or not ARG_NAME_RE.fullmatch(name):
        raise ValidationFailed(
            "A build argument name is letters, digits and _, not starting with a digit "
            "(at most 64).",
            field="name",
        )
    value = _check_value(value, what="build argument", required=False)
    with transaction.atomic():
        _check_room(app, BuildArg, name)
        arg, _ = BuildArg.objects.update_or_create(app=app, name=name, defaults={"value": value})
    return arg


def build_arg_delete(*, app: App, name: str) -> None:
    deleted, _ = BuildArg.objects.filter(app=app, name=name).delete()
    if not deleted:
        raise NotFound(f"No build argument named {name!r}.")


@sensitive_variables("value")  # kept out of error reports
def build_secret_set(*, app: App, name: str, value: Any) -> BuildSecret:
    """Store (or replace) a secret. The value is sealed at once; nothing
    returns it afterwards but :func:`build_secret_values` (for the build)."""
    if not isinstance(name, str) or not SECRET_NAME_RE.fullmatch(name):
        raise ValidationFailed(
            "A build secret name is letters, digits, _, . and -, not starting with a digit, "
            "a dot or a dash (at most 64).",
            field="name",
        )
    value = _check_value(value, what="build secret", required=True)
    with transaction.atomic():
        _check_room(app, BuildSecret, name)
        secret, _ = BuildSecret.objects.update_or_create(
            app=app, name=name, defaults={"sealed": seal(value)}
        )
    return secret


def build_secret_delete(*, app: App, name: str) -> None:
    deleted, _ = BuildSecret.objects.filter(app=app, name=name).delete()
    if not deleted:
        raise NotFound(f"No build secret named {name!r}.")


# --- selectors -----------------------------------------------------------------


def build_args_of(*, app: App) -> dict[str, str]:
    return dict(BuildArg.objects.filter(app=app).values_list("name", "value"))


def build_secret_names(*, app: App) -> list[dict[str, str]]:
    """What may be shown of the secrets: names and when they were set."""
    return [
        {"name": name, "updated_at": updated.isoformat()}
        for name, updated in BuildSecret.objects.filter(app=app).values_list("name", "updated_at")
    ]


def build_secret_values(*, app: App) -> dict[str, str]:
    """The values, for the build worker only (files in RUN steps)."""
    return {
        name: unseal(sealed, name=name)
        for name, sealed in BuildSecret.objects.filter(app=app).values_list("name", "sealed")
    }
