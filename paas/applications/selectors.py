from __future__ import annotations

from django.db.models import QuerySet

from paas.accounts.models import Role
from paas.accounts.services import require_role, role_in_team
from paas.accounts.types import AnyUser
from paas.applications.models import App
from paas.applications.views_data import config_json
from paas.core.errors import NotFound


def apps_visible_to(*, user: AnyUser) -> QuerySet[App]:
    if not user.is_authenticated:
        return App.objects.none()
    return App.objects.filter(team__memberships__user=user).select_related("team")


def app_for_user(*, user: AnyUser, name: str, action: str = "view") -> App:
    """The app, if ``user``'s role in its team allows ``action``; another
    team's app is NotFound, exactly like a missing one."""
    app = App.objects.filter(name=name).select_related("team").first()
    if app is None:
        raise NotFound(f"No app named {name!r}.")
    try:
        require_role(user=user, team_id=app.team_id, action=action)
    except NotFound:
        raise NotFound(f"No app named {name!r}.") from None
    return app


def config_for_user(*, user: AnyUser, app: App) -> list[dict[str, str]]:
    """The app's config vars as ``user`` may see them: values for owners of
    the app's team, masked for everyone else."""
    owner = role_in_team(user=user, team_id=app.team_id) == Role.OWNER
    return config_json(app, reveal=owner)
