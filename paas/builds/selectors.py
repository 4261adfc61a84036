from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

from paas.accounts.services import require_role
from paas.accounts.types import AnyUser
from paas.applications.models import Release, ReleaseState
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
    """Manifest digests of the app's images that pruning must never delete:
    those of its newest PAAS_KEEP_IMAGES releases (all with 0) and of the
    release serving now, so a rollback to any kept release always finds its
    image (config-only releases share their build's digest)."""
    releases = Release.objects.filter(app_id=app_id).order_by("-number")
    keep = settings.PAAS_KEEP_IMAGES
    kept = list(releases[:keep] if keep else releases)
    kept += releases.filter(state=ReleaseState.CURRENT)
    return frozenset(r.image.rpartition("@")[2] for r in kept if "@sha256:" in r.image)
