"""Builds: intake of uploaded source, claiming, running and finishing."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from django import db
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from paas.applications.models import App
from paas.applications.selectors import app_for_user
from paas.builds.archive import ArchiveLimits, UnsafeArchive, detect_format, extract_archive
from paas.builds.buildvars import build_args_of, build_secret_values
from paas.builds.engine.diskspace import DISK_ERRNOS, out_of_space
from paas.builds.engine.errors import BuildCancelled, BuildFailed
from paas.builds.engine.housekeeping import mark_gc_needed
from paas.builds.models import Build, BuildLogLine, BuildState
from paas.builds.selectors import images_in_use
from paas.core.errors import PaasError, ValidationFailed
from paas.core.events import group_send
from paas.core.redrive import enqueue_marked, redrive
from paas.hosts.live import build_changed
from runtime_agent.host.errors import HostError
from runtime_agent.host.private import private_dir

log = logging.getLogger(__name__)


def build_group(build_id: uuid.UUID | str) -> str:
    return f"build_{build_id}"


# --- intake ------------------------------------------------------------------


def _too_large() -> ValidationFailed:
    limit = settings.PAAS_MAX_UPLOAD_BYTES
    shown = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return ValidationFailed(f"The upload is larger than the limit of {shown}.", field="source")


def upload_refuse_early(*, content_length: str | None) -> None:
    """Refuse a body that announces more than the limit before it is parsed
    (a proxy in front should also cap it, since the server reads it first)."""
    # Room for the multipart boundaries and headers around the file.
    slack = 64 * 1024
    announced = int(content_length) if content_length and content_length.isdigit() else 0
    if announced > settings.PAAS_MAX_UPLOAD_BYTES + slack:
        raise _too_large()


def _store_upload(chunks: Iterator[bytes], dest: Path) -> int:
    """Write the upload to a temp name and rename it into place, so a failed
    upload never leaves a half-written archive that a build could pick up."""
    private_dir(dest.parent)
    tmp = dest.with_name(dest.name + ".part")
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if size > settings.PAAS_MAX_UPLOAD_BYTES:
                    raise _too_large()
                fh.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def build_accept_upload(
    *,
    user: User,
    app_name: str,
    content_length: str | None,
    read_source: Callable[[], UploadedFile | None],
) -> Build:
    """Accept an upload for the app named ``app_name`` and queue its build:
    the one place that checks the uploader may deploy this app.

    ``read_source`` parses the request body; it is called only once the user
    may deploy and the announced size fits, so a refused upload is never read.
    """
    app = app_for_user(user=user, name=app_name, action="deploy")
    upload_refuse_early(content_length=content_length)
    upload = read_source()
    if upload is None:
        raise ValidationFailed(
            "Choose a .tar, .tar.gz, .tgz or .zip file to upload (the multipart field 'source').",
            field="source",
        )
    return build_create_from_upload(
        user=user, app=app, filename=upload.name or "", chunks=upload.chunks()
    )


def _next_number(app: App) -> int:
    return (Build.objects.filter(app=app).aggregate(n=Max("number"))["n"] or 0) + 1


def build_create_from_upload(
    *, user: User | None, app: App, filename: str, chunks: Iterator[bytes]
) -> Build:
    """Store an uploaded archive and queue a build of it.

    The caller has checked that ``user`` may deploy ``app`` (None: the
    platform itself, for a webhook's push). The format is
    checked from the file's bytes; a refused upload leaves nothing behind.
    """
    build_id = uuid.uuid4()
    path = Path(settings.UPLOAD_DIR) / f"{build_id}.upload"
    size = _store_upload(chunks, path)
    try:
        if size == 0:
            raise ValidationFailed("The uploaded file is empty.", field="source")
        try:
            detect_format(path, filename)
        except UnsafeArchive as exc:
            raise ValidationFailed(exc.message, field="source") from None
        build = _create_build_row(build_id, user, app, filename, path, size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    transaction.on_commit(lambda: _enqueue_build(str(build.pk)))
    return build


def _enqueue_build(build_id: str) -> None:
    from paas.builds.tasks import run_build

    enqueue_marked("build", build_id, run_build.delay)


def builds_redrive_queued() -> list[str]:
    """Builds still queued after PAAS_REDRIVE_AFTER_S whose task the broker
    lost (see paas/core/redrive.py): sent again."""
    from paas.builds.tasks import run_build

    since = timezone.now() - timedelta(seconds=settings.PAAS_REDRIVE_AFTER_S)
    waiting = Build.objects.filter(state=BuildState.QUEUED, created_at__lt=since)
    ids = [str(pk) for pk in waiting.values_list("pk", flat=True)]
    return redrive("build", ids, run_build.delay, task=run_build.name)


def _create_build_row(
    build_id: uuid.UUID, user: User | None, app: App, filename: str, path: Path, size: int
) -> Build:
    # Two uploads at once may race for the same number; the unique
    # constraint catches it and the loser takes the next one.
    for _ in range(5):
        try:
            with transaction.atomic():
                build = Build.objects.create(
                    id=build_id,
                    app=app,
                    number=_next_number(app),
                    archive_name=os.path.basename(filename)[:255],
                    archive_path=str(path),
                    archive_size=size,
                    created_by_id=user.pk if user else None,
                )
                build_changed(app_id=app.pk, build_id=str(build.pk))
                return build
        except IntegrityError:
            continue
    raise ValidationFailed("Too many builds were started at once; try again.")


# --- log and state -------------------------------------------------------------


class BuildLogWriter:
    """Appends numbered lines to a build's log and streams each one live.

    Only the worker that claimed the build writes, so a local counter is safe.
    What a build prints is the tenant's: past ``PAAS_BUILD_LOG_MAX_LINES``
    lines or ``PAAS_BUILD_LOG_MAX_BYTES`` bytes one "log truncated" line is
    written and the rest dropped (neither stored nor streamed); the
    platform's own last word (:meth:`final`) is always kept.
    """

    def __init__(self, build_id: uuid.UUID | str) -> None:
        self.build_id = build_id
        last = BuildLogLine.objects.filter(build_id=build_id).aggregate(n=Max("seq"))["n"]
        self.seq = last or 0
        self.max_lines: int = settings.PAAS_BUILD_LOG_MAX_LINES
        self.max_bytes: int = settings.PAAS_BUILD_LOG_MAX_BYTES
        self.bytes = 0
        self.truncated = False

    def __call__(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            if self.truncated:
                continue
            size = len(line.encode())
            if self.seq >= self.max_lines or self.bytes + size > self.max_bytes:
                self.truncated = True
                self._write(
                    f"!!     log truncated: this build printed more than {self.max_lines} lines "
                    f"or {self.max_bytes} bytes; later lines are not kept"
                )
                continue
            self.bytes += size
            self._write(line)

    def final(self, text: str) -> None:
        """The outcome of the build: written even past the cap."""
        for line in text.splitlines() or [""]:
            self._write(line)

    def _write(self, line: str) -> None:
        self.seq += 1
        BuildLogLine.objects.create(build_id=self.build_id, seq=self.seq, text=line)
        group_send(
            build_group(self.build_id), {"type": "build.line", "seq": self.seq, "text": line}
        )


def build_state_event(build: Build) -> dict[str, str]:
    """What the build page shows of a build's state, live or on connect."""
    return {"state": build.state, "error": build.error, "image": build.digest_ref}


def _publish_state(build: Build) -> None:
    group_send(build_group(build.pk), {"type": "build.state", **build_state_event(build)})
    build_changed(app_id=build.app_id, build_id=str(build.pk))  # the app page's row


def build_claim(*, build_id: str) -> bool:
    """Move a queued build to building. Only one caller can win; a task
    delivered twice finds the build already claimed and stops."""
    now = timezone.now()
    won = Build.objects.filter(pk=build_id, state=BuildState.QUEUED).update(
        state=BuildState.BUILDING,
        started_at=now,
        lease_expires_at=now + timedelta(seconds=settings.PAAS_BUILD_LEASE_SECONDS),
    )
    if won:
        _publish_state(Build.objects.get(pk=build_id))
    return bool(won)


def _take_version(build_id: str) -> int:
    """The app's next version for this build. Two builds of one app may run
    at once: the unique (app, version) constraint makes the loser retry."""
    build = Build.objects.get(pk=build_id)
    for _ in range(10):
        latest = Build.objects.filter(app_id=build.app_id).aggregate(v=Max("version"))["v"]
        try:
            with transaction.atomic():
                Build.objects.filter(pk=build_id).update(version=(latest or 0) + 1)
            return (latest or 0) + 1
        except IntegrityError:
            continue
    raise ValidationFailed("Too many builds of this app at once; try again.")


def build_finish(*, build_id: str, state: BuildState, error: str = "", **fields: object) -> bool:
    """Record the outcome, only if the build is still building (a cancel or
    the abandoned-build sweep may have ended it first)."""
    now = timezone.now()
    if state != BuildState.SUCCEEDED:
        # Only successful builds keep a version, so the tags have no holes
        # (unless a later build of the same app was already running).
        fields.setdefault("version", None)
    done = Build.objects.filter(pk=build_id, state=BuildState.BUILDING).update(
        state=state, error=error, finished_at=now, lease_expires_at=None, **fields
    )
    if done:
        _publish_state(Build.objects.get(pk=build_id))
    return bool(done)


def build_cancel(*, build: Build, user: User | None = None) -> bool:
    """Cancel a queued or running build. The state changes at once (a queued
    build's task then finds nothing to claim); the worker running a build
    notices within a second, kills its step and removes what it made.
    False when the build had already ended."""
    cancelled = Build.objects.filter(
        pk=build.pk, state__in=[BuildState.QUEUED, BuildState.BUILDING]
    ).update(
        state=BuildState.CANCELLED,
        finished_at=timezone.now(),
        lease_expires_at=None,
        error=f"Cancelled by {user.username}." if user else "Cancelled.",
        version=None,
    )
    if cancelled:
        build.refresh_from_db()
        _publish_state(build)
    return bool(cancelled)


def _after_cancel(build_id: str, out: BuildLogWriter) -> None:
    # The version may have been taken between the claim and the cancel.
    Build.objects.filter(pk=build_id, state=BuildState.CANCELLED).update(version=None)
    out.final("-----> Build cancelled")


def builds_fail_abandoned() -> int:
    """Fail builds whose worker stopped renewing its lease (killed mid-build),
    and remove their source directory (PAAS_BUILD_DIR/<id>/, the source
    half-extracted or built from), which their worker no longer can.
    Housekeeping would too, but up to a quarter of an hour later (two leases
    after the end, on its own interval); the engine's scratch dirs (mounts,
    step containers) are the reaper's.

    A build that died pushing left blobs in the registry that no manifest
    will ever reference. The registry's garbage collection frees them, but
    housekeeping only runs it after image versions were deleted, which an
    app that never prunes may not see for weeks: so any failed abandoned
    build asks for one (the next housekeeping pass runs it, holding off
    every push, engine/housekeeping.py)."""
    count = 0
    stale = Build.objects.filter(state=BuildState.BUILDING, lease_expires_at__lt=timezone.now())
    for build_id in stale.values_list("pk", flat=True):
        if build_finish(
            build_id=str(build_id),
            state=BuildState.FAILED,
            error="The worker running this build stopped; start the build again.",
        ):
            count += 1
            # fd-based on Linux: no link the tenant's source holds is followed.
            shutil.rmtree(Path(settings.BUILD_DIR) / str(build_id), ignore_errors=True)
    if count:
        mark_gc_needed(Path(settings.PAAS_BUILD_CACHE_DIR))
    return count


def builds_reap_leftovers() -> list[str]:
    """Remove the containers, mounts and scratch dirs of builds whose worker
    died mid-step on this host (live builds hold a lock and are left alone)."""
    # The engine (pyroute2, the registry client) is the worker's alone: the
    # web imports this module and must not load it (issue 13's footprint).
    from paas.builds.engine import reap_stale_builds
    from paas.builds.engine_adapter import engine_config

    return reap_stale_builds(engine_config())


# How often the worker looks whether its build was cancelled.
CANCEL_POLL_S = 0.5


@contextmanager
def _lease_kept(build_id: str) -> Iterator[threading.Event]:
    """Renew the build's lease from a side thread while the build runs, and
    set the yielded event when the build is cancelled (by a person, from
    any process: the database says so)."""
    stop, cancelled = threading.Event(), threading.Event()
    every = settings.PAAS_BUILD_LEASE_SECONDS / 3

    def renew() -> None:
        next_renewal = time.monotonic() + every
        try:
            while not stop.wait(CANCEL_POLL_S):
                if Build.objects.filter(pk=build_id, state=BuildState.CANCELLED).exists():
                    cancelled.set()
                    return
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + every
                    Build.objects.filter(pk=build_id, state=BuildState.BUILDING).update(
                        lease_expires_at=timezone.now()
                        + timedelta(seconds=settings.PAAS_BUILD_LEASE_SECONDS)
                    )
        finally:
            # This thread's own database connection: close it, or every
            # build would leave one open (PostgreSQL counts them).
            db.connection.close()

    thread = threading.Thread(target=renew, name=f"lease-{build_id}", daemon=True)
    thread.start()
    try:
        yield cancelled
    finally:
        stop.set()
        thread.join()


# --- running -------------------------------------------------------------------


def _archive_limits() -> ArchiveLimits:
    return ArchiveLimits(
        max_total_bytes=settings.PAAS_ARCHIVE_MAX_BYTES,
        max_files=settings.PAAS_ARCHIVE_MAX_FILES,
        max_ratio=settings.PAAS_ARCHIVE_MAX_RATIO,
    )


def build_run(*, build_id: str) -> None:
    """Claim, extract and build. Safe to call twice: the second call sees the
    build claimed and returns."""
    if not build_claim(build_id=build_id):
        log.info("build %s is not queued; nothing to do", build_id)
        return
    build = Build.objects.select_related("app").get(pk=build_id)
    out = BuildLogWriter(build_id)
    source = private_dir(Path(settings.BUILD_DIR)) / str(build_id) / "source"
    try:
        with _lease_kept(build_id) as cancelled:
            out(f"-----> Build #{build.number} of {build.app.name} from {build.archive_name}")
            extract_archive(
                Path(build.archive_path),
                source,
                limits=_archive_limits(),
                log=lambda line: out(f"       {line}"),
                filename=build.archive_name,
            )
            fields = _build_image(build, source, out, cancelled)
    except BuildCancelled:
        _after_cancel(build_id, out)
    except BuildFailed as exc:  # the engine has logged it
        build_finish(build_id=build_id, state=BuildState.FAILED, error=str(exc))
    except (HostError, PaasError) as exc:
        out.final(f"!!     {exc.message}")
        build_finish(build_id=build_id, state=BuildState.FAILED, error=exc.message)
    except Exception as exc:
        reason = _disk_full(exc)
        if reason is None:
            log.exception("build %s crashed", build_id)
            reason = f"internal error: {exc}"
        out.final(f"!!     {reason}")
        build_finish(build_id=build_id, state=BuildState.FAILED, error=reason)
    else:
        if cancelled.is_set():  # cancelled after the last step: not recorded as built
            _after_cancel(build_id, out)
        else:
            out.final("-----> Build succeeded")
            build_finish(build_id=build_id, state=BuildState.SUCCEEDED, **fields)
    finally:
        shutil.rmtree(source.parent, ignore_errors=True)


def _disk_full(exc: Exception) -> str | None:
    """The reason to show when the build directory's disk filled up (the
    source is extracted there), else None: a full disk is the operator's to
    fix, not an internal error nor the upload's fault."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_ERRNOS:
        return None
    return out_of_space(Path(settings.BUILD_DIR)) or f"out of disk space on the build host ({exc})"


def _build_image(
    build: Build, source: Path, out: BuildLogWriter, cancel: threading.Event
) -> dict[str, Any]:
    """Build and push the image; the fields to record on the Build."""
    from paas.builds.engine_adapter import build_app_image, build_tenant  # the worker's: see above

    version = _take_version(str(build.pk))
    result = build_app_image(
        app=build.app.name,
        build_id=str(build.pk),
        version=version,
        source=source,
        log=out,
        build_args=build_args_of(app=build.app),
        secrets=build_secret_values(app=build.app),
        cancel=cancel,
        protected_digests=lambda: images_in_use(app_id=build.app_id),  # at pruning time
        tenant=build_tenant(build.app),
    )
    out(f"-----> {result.image_ref} ({result.digest}) in {result.duration_s:.2f} s")
    return {
        "version": version,
        "kind": result.kind,
        "image_ref": result.image_ref,
        "image_digest": result.digest,
        "image_size": result.size,
        "process_types": result.process_types,
        "steps": [asdict(step) for step in result.steps],
        "duration_s": result.duration_s,
    }
