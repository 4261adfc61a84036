"""A commit becomes a build, the build a release: the same path as an
upload (the commit is archived with ``git archive`` and handed to
``build_create_from_upload``), and, for a push, the progress of both
followed from the database as lines for the pusher's terminal."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User

from paas.applications.models import App, Release, ReleaseState
from paas.builds.models import Build, BuildLogLine, BuildState
from paas.builds.services import build_create_from_upload
from paas.gitdeploy.git import git_run
from paas.logs.models import LogLine, LogSource
from runtime_agent.host.private import private_dir

POLL_S = 0.3
SETTLED = {ReleaseState.CURRENT, ReleaseState.FAILED, ReleaseState.RETIRED}


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            yield chunk


def build_from_commit(*, app: App, user: User | None, repo: Path, sha: str) -> Build:
    """Archive ``sha`` of ``repo`` (a tar of its tree, no .git) and queue
    its build. The tar is written aside first, so a failed archive queues
    nothing."""
    scratch = private_dir(Path(settings.UPLOAD_DIR))
    fd, name = tempfile.mkstemp(prefix=".git-archive-", dir=scratch)
    try:
        with os.fdopen(fd, "wb") as out:
            git_run(["archive", "--format=tar", sha], repo=repo, stdout=out, timeout=600)
        return build_create_from_upload(
            user=user, app=app, filename=f"{sha[:12]}.tar", chunks=_chunks(Path(name))
        )
    finally:
        os.unlink(name)


def _build_lines(build_id: str, after: int) -> list[tuple[int, str]]:
    rows = BuildLogLine.objects.filter(build_id=build_id, seq__gt=after).order_by("seq")
    return list(rows.values_list("seq", "text")[:500])


def follow_build(build: Build, deadline: float) -> Generator[str | None, None, str | None]:
    """Yield the build's log lines as they are written (and None after
    ``PAAS_GIT_KEEPALIVE_S`` of silence); return why the deploy stops here
    (None when the build succeeded)."""
    seen, spoke = 0, time.monotonic()
    while True:
        lines = _build_lines(str(build.pk), seen)
        for number, text in lines:
            seen, spoke = number, time.monotonic()
            yield text
        if lines:
            continue
        build.refresh_from_db(fields=["state", "error"])
        if build.is_final and not _build_lines(str(build.pk), seen):
            break
        if time.monotonic() > deadline:
            return "timed out waiting for the build (it goes on; see the app's page)"
        if time.monotonic() - spoke > settings.PAAS_GIT_KEEPALIVE_S:
            spoke = time.monotonic()
            yield None
        time.sleep(POLL_S)
    if build.state == BuildState.SUCCEEDED:
        return None
    return f"build {build.state}"


def _platform_lines(app_id: int, after: int) -> list[tuple[int, str]]:
    rows = LogLine.objects.filter(app_id=app_id, seq__gt=after, source=LogSource.PLATFORM)
    return list(rows.order_by("seq").values_list("seq", "text")[:200])


def _last_log_seq(app_id: int) -> int:
    last = LogLine.objects.filter(app_id=app_id).order_by("-seq").values_list("seq", flat=True)
    return last.first() or 0


def follow_release(build: Build, deadline: float) -> Generator[str | None, None, str | None]:
    """Yield the rollout's platform lines until the build's release settles;
    return why the deploy failed (None when it is live)."""
    seen, spoke = _last_log_seq(build.app_id), time.monotonic()
    release = None
    while release is None or release.state not in SETTLED:
        if time.monotonic() > deadline:
            return "timed out waiting for the rollout (it goes on; see the app's page)"
        if time.monotonic() - spoke > settings.PAAS_GIT_KEEPALIVE_S:
            spoke = time.monotonic()
            yield None
        time.sleep(POLL_S)
        if release is None:
            release = Release.objects.filter(build=build).first()
            if release is not None:
                yield f"-----> Releasing {release.label}"
        else:
            release.refresh_from_db(fields=["state", "error"])
        for number, text in _platform_lines(build.app_id, seen):
            seen, spoke = number, time.monotonic()
            yield text
    if release.state == ReleaseState.FAILED:
        return f"{release.label} failed: {release.error}"
    url = f"http://{build.app.name}.{settings.PAAS_DOMAIN}:{settings.PAAS_ROUTER_PORT}/"
    yield f"-----> {release.label} is live at {url}"
    return None


def deploy_and_follow(
    *, app: App, user: User | None, repo: Path, sha: str
) -> Generator[str | None, None, str | None]:
    """Build and roll out ``sha``, yielding progress lines; return the
    reason the deploy failed, or None."""
    deadline = time.monotonic() + settings.PAAS_GIT_PUSH_TIMEOUT_S
    yield f"-----> Deploying {sha[:12]} to {app.name}"
    build = build_from_commit(app=app, user=user, repo=repo, sha=sha)
    yield f"-----> Build #{build.number} queued"
    reason = yield from follow_build(build, deadline)
    if reason:
        return reason
    return (yield from follow_release(build, deadline))
