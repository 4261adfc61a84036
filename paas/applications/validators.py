from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# A DNS label, lowercase only: the name becomes <name>.<PAAS_DOMAIN>.
APP_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def validate_app_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValidationError("Give the app a name.")
    if len(name) > 63:
        raise ValidationError(f"App names are at most 63 characters; this one has {len(name)}.")
    if not APP_NAME_RE.fullmatch(name):
        raise ValidationError(
            "An app name is a DNS label: lowercase letters a-z, digits and hyphens, "
            "starting and ending with a letter or digit (for example my-app-2)."
        )
