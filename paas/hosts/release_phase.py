"""The release phase: a Procfile's ``release:`` command (migrations, say)
runs once, in a new container of the new release, before any instance of
it starts. If it fails, the release fails and nothing else changes.

The container is named after the release like an instance (so a retried
deploy finds the one it started instead of running the command twice) and
removed once it has ended.
"""

from __future__ import annotations

from django.conf import settings

from paas.applications.models import DEFAULT_MEMORY_BYTES, Release
from paas.core.errors import PaasError
from paas.hosts.instances import LOG_LINES_ON_FAILURE, container_name
from paas.hosts.oneoff import Ended, oneoff_request, run_to_end

RELEASE_PHASE = "release"


class ReleasePhaseFailed(PaasError):
    code = "release_phase_failed"
    status = 409


def release_phase_run(release: Release) -> None:
    """Run the release command if the release has one; raise if it fails."""
    command = release.process_types.get(RELEASE_PHASE)
    if not command:
        return
    name = container_name(release.app.name, release.number, RELEASE_PHASE, 1)
    request = oneoff_request(release, name, command, RELEASE_PHASE)
    ended = run_to_end(request, release, settings.PAAS_RELEASE_TIMEOUT_S)
    if ended.timed_out:
        raise ReleasePhaseFailed(
            f"the release command ({command}) did not finish within "
            f"{settings.PAAS_RELEASE_TIMEOUT_S:g} s"
        )
    if not ended.ok:
        raise ReleasePhaseFailed(f"the release command ({command}) {_why(ended)}")


def _why(ended: Ended) -> str:
    if ended.oom_killed:
        mib = DEFAULT_MEMORY_BYTES // 2**20
        why = f"was killed for using more than its memory limit ({mib} MiB)"
    elif ended.exit_code is not None:
        why = f"exited with code {ended.exit_code}"
    else:
        why = "was stopped"
    tail = "\n".join(ended.output[-LOG_LINES_ON_FAILURE:])
    return f"{why}; its last log lines:\n{tail}" if tail else why
