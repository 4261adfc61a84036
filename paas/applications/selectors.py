from __future__ import annotations

from django.db.models import QuerySet

from paas.accounts.services import require_role
from paas.accounts.types import AnyUser
from paas.applications.models import App
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
