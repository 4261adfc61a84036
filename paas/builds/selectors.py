from __future__ import annotations

from django.core.exceptions import ValidationError

from paas.accounts.services import require_role
from paas.accounts.types import AnyUser
from paas.builds.models import Build, BuildLogLine
from paas.core.errors import NotFound


def build_for_user(*, user: AnyUser, build_id: str, action: str = "view") -> Build:
    try:
        build = Build.objects.select_related("app").filter(pk=build_id).first()
    except ValidationError:  # not a UUID
        build = None
    if build is None:
        raise NotFound("No such build.")
    try:
        require_role(user=user, team_id=build.app.team_id, action=action)
    except NotFound:
        raise NotFound("No such build.") from None
    return build


def build_log_since(build_id: str, seq: int) -> list[tuple[int, str]]:
    return list(
        BuildLogLine.objects.filter(build_id=build_id, seq__gt=seq)
        .order_by("seq")
        .values_list("seq", "text")
    )


def images_in_use(*, app_id: int) -> frozenset[str]:
    """Manifest digests of the app's images that pruning must never delete.

    HOOK for releases (the deploy work adds Release to paas/applications):
    return the digests every kept release references, so that rollback to
    any kept release always works and PAAS_KEEP_IMAGES counts releases.
    Until releases exist nothing more is protected than the newest
    PAAS_KEEP_IMAGES versions, which the engine keeps anyway."""
    return frozenset()
