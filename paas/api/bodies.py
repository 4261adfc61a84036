"""Reading a request's JSON body, once for every API view."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest

from paas.core.errors import ValidationFailed


def json_body(request: HttpRequest, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object. With ``optional`` (actions whose options
    are all optional), a body that is not JSON at all (none, or a form)
    reads as {}; a malformed JSON body is refused either way."""
    if optional and request.content_type != "application/json":
        return {}
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise ValidationFailed("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.")
    return data
