from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from paas.accounts.models import Team
from paas.accounts.services import require_role
from paas.applications.models import App
from paas.applications.validators import validate_app_name
from paas.core.errors import Conflict, ValidationFailed


def app_create(*, user: User, team: Team, name: str) -> App:
    require_role(user=user, team_id=team.pk, action="deploy")
    try:
        validate_app_name(name)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages[0], field="name") from None
    try:
        with transaction.atomic():
            return App.objects.create(team=team, name=name)
    except IntegrityError:
        raise Conflict(f"The name {name!r} is taken; pick another.", field="name") from None
