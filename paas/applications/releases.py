"""Releases, config vars and the formation: the desired state of an app.

A release is immutable (image, config snapshot, process types); a successful
build, a config change and a rollback each make a new one, and each new
release is handed to the deploy task once the transaction commits. The
deploy itself lives in :mod:`paas.hosts.deploy`.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from paas.accounts.services import require_role
from paas.applications.audit import audit_record
from paas.applications.models import (
    App,
    ConfigVar,
    Formation,
    Release,
    ReleaseCause,
    ReleaseState,
)
from paas.core.errors import Conflict, NotFound, ValidationFailed
from paas.core.redrive import enqueue_marked, redrive
from paas.hosts.live import release_changed

if TYPE_CHECKING:
    from runtime_agent.images.refs import ImageRef

CONFIG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# Set by the platform in every instance; an app cannot override them.
RESERVED_KEYS = {"PORT"}
MAX_CONFIG_VALUE = 32 * 1024
MAX_INSTANCES = 20


def _enqueue_deploy(release: Release) -> None:
    release_id = release.pk
    transaction.on_commit(lambda: _send_deploy(release_id))


def _send_deploy(release_id: int) -> None:
    from paas.hosts.tasks import deploy_release

    enqueue_marked("release", release_id, deploy_release.delay)


def releases_redrive_pending() -> list[int]:
    """Releases still pending after PAAS_REDRIVE_AFTER_S whose deploy task
    the broker lost (see paas/core/redrive.py): sent again."""
    from paas.hosts.tasks import deploy_release

    since = timezone.now() - timedelta(seconds=settings.PAAS_REDRIVE_AFTER_S)
    waiting = Release.objects.filter(state=ReleaseState.PENDING, created_at__lt=since)
    ids = list(waiting.values_list("pk", flat=True))
    return redrive("release", ids, deploy_release.delay, task=deploy_release.name)


def _next_number(app: App) -> int:
    return (Release.objects.filter(app=app).aggregate(n=Max("number"))["n"] or 0) + 1


def _release_create(
    *,
    app: App,
    image: str,
    config: dict[str, str],
    process_types: dict[str, str],
    cause: ReleaseCause,
    description: str,
    user: User | None,
    build_id: str | None = None,
) -> Release:
    # Two releases of one app at once race for a number; the loser retries.
    for _ in range(5):
        try:
            with transaction.atomic():
                release = Release.objects.create(
                    app=app,
                    number=_next_number(app),
                    image=image,
                    config=config,
                    process_types=process_types,
                    cause=cause,
                    description=description[:200],
                    build_id=build_id,
                    created_by=user,
                )
                _ensure_formation(app, process_types)
                _enqueue_deploy(release)
                release_changed(app_id=app.pk)
                return release
        except IntegrityError:
            continue
    raise Conflict("Too many releases of this app at once; try again.")


def _ensure_formation(app: App, process_types: dict[str, str]) -> None:
    """Every process type gets a formation row: web runs one instance by
    default, other types none until scaled (as on Heroku)."""
    # "release" is the release phase's command, run once per release, not scaled.
    for name in {"web", *process_types} - {"release"}:
        Formation.objects.get_or_create(
            app=app, process_type=name, defaults={"count": 1 if name == "web" else 0}
        )


def release_current(*, app: App) -> Release | None:
    return Release.objects.filter(app=app, state=ReleaseState.CURRENT).first()


def _latest_image_release(app: App) -> Release | None:
    """What a config change builds on: the current release, else the newest."""
    return release_current(app=app) or Release.objects.filter(app=app).first()


def config_snapshot(*, app: App) -> dict[str, str]:
    return dict(ConfigVar.objects.filter(app=app).values_list("key", "value"))


def release_create_from_build(*, build_id: str) -> Release | None:
    """A successful build becomes the app's next release (once: a second
    call for the same build returns the first release)."""
    from paas.builds.models import Build, BuildState

    build = Build.objects.select_related("app", "created_by").get(pk=build_id)
    if build.state != BuildState.SUCCEEDED or not build.image_digest:
        return None
    existing = Release.objects.filter(build=build).first()
    if existing:
        return existing
    release = _release_create(
        app=build.app,
        image=build.digest_ref,
        config=config_snapshot(app=build.app),
        process_types=dict(build.process_types or {}),
        cause=ReleaseCause.BUILD,
        description=f"Build #{build.number} ({build.image_digest[:19]})",
        user=build.created_by,
        build_id=str(build.pk),
    )
    audit_record(
        actor=build.created_by, app=build.app, action="release.create", target=release.label,
        detail=release.description,
    )  # fmt: skip
    return release


def _validate_config(values: dict[str, str]) -> None:
    for key, value in values.items():
        if not CONFIG_KEY_RE.fullmatch(key):
            raise ValidationFailed(
                f"{key!r} is not a valid variable name: letters, digits and _, "
                "not starting with a digit.",
                field="key",
            )
        if key in RESERVED_KEYS:
            raise ValidationFailed(f"{key} is set by the platform.", field="key")
        if not isinstance(value, str) or len(value) > MAX_CONFIG_VALUE or "\x00" in value:
            raise ValidationFailed(
                f"The value of {key} must be text of at most 32 KiB.", field="value"
            )


def _release_for_config(app: App, user: User, description: str) -> Release | None:
    base = _latest_image_release(app)
    if base is None:
        return None  # nothing was built yet: the first build's release takes the config
    return _release_create(
        app=app,
        image=base.image,
        config=config_snapshot(app=app),
        process_types=base.process_types,
        cause=ReleaseCause.CONFIG,
        description=description,
        user=user,
    )


@transaction.atomic
def config_set(*, user: User, app: App, values: dict[str, str]) -> Release | None:
    """Set variables; a new release (and deploy) if the app has an image."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    if not values:
        raise ValidationFailed("Give at least one KEY=value.", field="key")
    _validate_config(values)
    for key, value in values.items():
        ConfigVar.objects.update_or_create(app=app, key=key, defaults={"value": value})
    keys = ", ".join(sorted(values))
    audit_record(actor=user, app=app, action="config.set", target=keys)
    return _release_for_config(app, user, f"Set {keys}")


@transaction.atomic
def config_unset(*, user: User, app: App, keys: list[str]) -> Release | None:
    require_role(user=user, team_id=app.team_id, action="deploy")
    deleted, _ = ConfigVar.objects.filter(app=app, key__in=keys).delete()
    if not deleted:
        raise NotFound(f"None of {', '.join(keys)} is set.")
    names = ", ".join(sorted(keys))
    audit_record(actor=user, app=app, action="config.unset", target=names)
    return _release_for_config(app, user, f"Unset {names}")


@transaction.atomic
def release_rollback(*, user: User, app: App, number: int) -> Release:
    """Deploy what release ``number`` ran, as a new release."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    target = Release.objects.filter(app=app, number=number).first()
    if target is None:
        raise NotFound(f"{app.name} has no release v{number}.")
    release = _release_create(
        app=app,
        image=target.image,
        config=target.config,
        process_types=target.process_types,
        cause=ReleaseCause.ROLLBACK,
        description=f"Rollback to v{number}",
        user=user,
    )
    audit_record(actor=user, app=app, action="release.rollback", target=release.label,
                 detail=f"to v{number}")  # fmt: skip
    return release


@transaction.atomic
def formation_scale(
    *, user: User, app: App, process_type: str, count: int, memory_bytes: int | None = None
) -> Formation:
    """Change a process type's count (and memory). A new count: the converge
    task starts or stops only the difference; a new memory limit: a new
    release rolls out with it (and the count)."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    if not 0 <= count <= MAX_INSTANCES:
        raise ValidationFailed(f"The count must be 0 to {MAX_INSTANCES}.", field="count")
    if memory_bytes is not None and memory_bytes < 16 * 1024 * 1024:
        raise ValidationFailed("The memory limit must be at least 16 MiB.", field="memory")
    formation = Formation.objects.filter(app=app, process_type=process_type).first()
    if formation is None:
        raise NotFound(f"{app.name} has no process type {process_type!r}.")
    memory_changed = memory_bytes is not None and memory_bytes != formation.memory_bytes
    formation.count = count
    if memory_bytes is not None:
        formation.memory_bytes = memory_bytes
    formation.save(update_fields=["count", "memory_bytes"])
    audit_record(actor=user, app=app, action="formation.scale",
                 target=f"{process_type}={count}")  # fmt: skip
    if memory_changed:
        # A container's memory limit is set when it is made: roll a new
        # release (same image and config) whose instances have the new one.
        mib = formation.memory_bytes // 2**20
        if _release_for_config(app, user, f"Memory of {process_type}: {mib} MiB"):
            return formation
    from paas.hosts.tasks import converge_app

    app_id = app.pk
    transaction.on_commit(lambda: converge_app.delay(app_id))
    return formation


def _check_image(app: App, image: str) -> ImageRef:
    """The parsed reference, if it names an image of one of the team's own
    apps in the platform's registry (the rule a Dockerfile's FROM follows),
    or an image in another registry that PAAS_DEPLOY_REGISTRIES allows."""
    from django.conf import settings

    from runtime_agent.host.errors import HostError
    from runtime_agent.images.refs import ImageRef

    try:
        ref = ImageRef.parse(image.strip())
    except HostError as exc:
        raise ValidationFailed(exc.message, field="image") from None
    if ref.registry != settings.PAAS_REGISTRY:
        allowed = settings.PAAS_DEPLOY_REGISTRIES
        if "*" not in allowed and ref.registry.lower() not in allowed:
            others = ", ".join(allowed) or "none"
            raise ValidationFailed(
                f"Images can be deployed from the platform's registry ({settings.PAAS_REGISTRY}) "
                f"and the registries this platform allows (PAAS_DEPLOY_REGISTRIES: {others}); "
                f"{ref.registry} is not one of them.",
                field="image",
            )
        return ref
    if not App.objects.filter(team_id=app.team_id, name=ref.repository).exists():
        raise ValidationFailed(
            f"{ref.repository} is not an app of this team: only its own apps' images "
            "can be deployed.",
            field="image",
        )
    return ref


def release_image_request(*, user: User, app: App, image: str) -> None:
    """Check the reference and queue the release for the worker: only it
    holds the registry's credentials to resolve the digest."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    _check_image(app, image)
    from paas.hosts.tasks import release_from_image

    args = (app.pk, image.strip(), user.pk)
    transaction.on_commit(lambda: release_from_image.delay(*args))


def _resolve_image(app: App, image: str) -> tuple[ImageRef, str, dict[str, str]]:
    """(reference, digest, process types) of an image the app may deploy."""
    from django.conf import settings

    from paas.builds.models import Build

    ref = _check_image(app, image)
    digest = _image_digest(app, ref, image)
    if ref.registry != settings.PAAS_REGISTRY:
        return ref, digest, {}  # its own CMD runs as web
    build = Build.objects.filter(app__name=ref.repository, image_digest=digest).first()
    return ref, digest, dict(build.process_types) if build else {}


def _image_digest(app: App, ref: ImageRef, image: str) -> str:
    """Ask the image's registry for its manifest: the platform's with the
    worker's own rights, another with the credential the app stored for it."""
    from django.conf import settings

    from paas.applications.registry_credentials import registry_credential_for
    from paas.builds.engine_adapter import registry_settings
    from runtime_agent.host.errors import HostError, ImageNotFound, RegistryError
    from runtime_agent.images.registry import RegistryClient

    found = None
    if ref.registry == settings.PAAS_REGISTRY:
        client = registry_settings().client()
    else:
        found = registry_credential_for(app=app, registry=ref.registry)
        client = RegistryClient(
            ref.registry,
            username=found[0] if found else None,
            password=found[1] if found else None,
            ca_file=settings.PAAS_REGISTRY_CA or None,
        )
    try:
        with client:
            _, digest, _ = client.get_manifest(ref.repository, ref.reference)
    except ImageNotFound as exc:
        raise ValidationFailed(f"The registry has no image {image}: {exc.message}") from None
    except RegistryError as exc:
        if "refused the credentials" in exc.message:
            who = f"the credential stored for it (user {found[0]!r})" if found else "no credential"
            raise ValidationFailed(
                f"The registry {ref.registry} refused access to {ref.repository} with {who}: "
                "set the app's credential for this registry and deploy again.",
                field="image",
            ) from None
        raise ValidationFailed(f"Could not get {image}: {exc.message}", field="image") from None
    except HostError as exc:
        raise ValidationFailed(f"The registry has no image {image}: {exc.message}") from None
    return digest


def release_image_deleted(*, release: Release) -> bool:
    """Whether the platform's registry no longer has the release's image:
    pruning deleted it (it keeps the images of the last PAAS_KEEP_IMAGES
    releases and of the serving one), so a rollback to this release cannot
    run anywhere, even where an agent still holds a copy. Only the worker
    holds the registry's credentials to ask. Another registry, or one that
    does not answer, is left to the agent's pull."""
    from paas.builds.engine_adapter import registry_settings
    from runtime_agent.host.errors import HostError, ImageNotFound
    from runtime_agent.images.refs import ImageRef

    try:
        ref = ImageRef.parse(release.image)
    except HostError:
        return False
    if ref.registry != settings.PAAS_REGISTRY:
        return False
    try:
        with registry_settings().client() as client:
            client.get_manifest(ref.repository, ref.reference)
    except ImageNotFound:
        return True
    except HostError:
        return False
    return False


@transaction.atomic
def release_create_from_image(*, user: User, app: App, image: str) -> Release:
    """Deploy an existing image (by tag or digest) as the app's next release."""
    require_role(user=user, team_id=app.team_id, action="deploy")

    ref, digest, process_types = _resolve_image(app, image)
    release = _release_create(
        app=app,
        image=f"{ref.registry}/{ref.repository}@{digest}",
        config=config_snapshot(app=app),
        process_types=process_types,
        cause=ReleaseCause.IMAGE,
        description=f"Image {image.strip()[:150]}",
        user=user,
    )
    audit_record(actor=user, app=app, action="release.image", target=release.label,
                 detail=release.image)  # fmt: skip
    return release


@transaction.atomic
def formation_publish(
    *, user: User, app: App, process_type: str, tcp_port: int | None
) -> Release | None:
    """Publish a TCP port of a process type's containers on their hosts (or
    stop publishing, with None). Containers get ports only when made, so a
    new release (same image and config) rolls instances that have it."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    if tcp_port is not None and not 1 <= tcp_port <= 65535:
        raise ValidationFailed("The TCP port must be between 1 and 65535.", field="tcp_port")
    formation = Formation.objects.filter(app=app, process_type=process_type).first()
    if formation is None:
        raise NotFound(f"{app.name} has no process type {process_type!r}.")
    formation.tcp_port = tcp_port
    formation.save(update_fields=["tcp_port"])
    what = f"{process_type} TCP {tcp_port}" if tcp_port else f"{process_type}: no TCP port"
    audit_record(actor=user, app=app, action="formation.publish", target=what)
    return _release_for_config(app, user, f"Publish {what}")


def release_image_by_id(*, app_id: int, image: str, user_id: int) -> Release | None:
    """The worker's side of :func:`release_image_request`; a refusal (no such
    tag, say) goes to the audit log."""
    from paas.applications.models import AuditResult

    app = App.objects.filter(pk=app_id).first()
    user = User.objects.filter(pk=user_id).first()
    if app is None or user is None:
        return None
    try:
        return release_create_from_image(user=user, app=app, image=image)
    except (ValidationFailed, NotFound) as exc:
        audit_record(actor=user, app=app, action="release.image", target=image[:200],
                     result=AuditResult.FAILED, detail=exc.message)  # fmt: skip
        from paas.logs.services import logs_platform_say

        try:
            text = f"Deploying {image[:200]} failed: {exc.message}"
            logs_platform_say(app_id=app.pk, text=text)
        except Exception:  # the log is a view on the outcome; the audit entry holds it
            logging.getLogger(__name__).exception("could not log the failed image deploy")
        return None
