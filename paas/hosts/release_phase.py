"""The release phase: a Procfile's ``release:`` command (migrations, say)
runs once, in a new container of the new release, before any instance of
it starts. If it fails, the release fails and nothing else changes.

"Once" holds across a worker that dies mid-deploy, whose deploy is resumed
by another (paas/hosts/resume.py). The command's progress is kept on the
release (``release_command``), moved only by conditional updates:

- not run -> running, with the host chosen, before its container is made:
  of two runs of one deploy, only the one that wins this update starts it;
- running -> succeeded or failed once its container has ended, before the
  container is removed: an ended command's outcome is never lost with it.

A resumed deploy goes on from what the release says: a command that
succeeded is not run again; one that failed fails the release (as it did,
or would have); one still "running" was interrupted by the worker's death.
Its container is looked for on the host it was made on: found (running or
ended), it is the same run, waited for (PAAS_RELEASE_TIMEOUT_S again, from
the resume) and its outcome taken; gone (the agent lost it), whether the
command finished cannot be known, and running a migration twice is worse
than asking, so the release fails and says to deploy again once its people
have checked. (A worker that died between the claim and the container's
creation reads the same way: the conservative answer.) The container is named after the
release like an instance and removed once its outcome is recorded.
"""

from __future__ import annotations

import logging

from django.conf import settings

from paas.applications.models import DEFAULT_MEMORY_BYTES, Release, ReleaseCommandState
from paas.core.errors import PaasError
from paas.core.failpoints import failpoint
from paas.hosts.agent_client import AgentClient, ContainerMissing
from paas.hosts.instances import LOG_LINES_ON_FAILURE, container_name
from paas.hosts.models import Host
from paas.hosts.oneoff import (
    Ended,
    oneoff_host,
    oneoff_pull_auth,
    oneoff_remove,
    oneoff_request,
    oneoff_start,
    oneoff_wait,
)
from paas.hosts.services import host_client
from runtime_agent import wire

log = logging.getLogger(__name__)

RELEASE_PHASE = "release"


class ReleasePhaseFailed(PaasError):
    code = "release_phase_failed"
    status = 409


def release_phase_run(release: Release) -> None:
    """Run the release command if the release has one and it has not run
    yet (see above); raise if it fails or failed."""
    command = release.process_types.get(RELEASE_PHASE)
    if not command:
        return
    name = container_name(release.app.name, release.number, RELEASE_PHASE, 1)
    request = oneoff_request(release, name, command, RELEASE_PHASE)
    if _state(release) == ReleaseCommandState.NOT_RUN:
        host = oneoff_host(release)
        # Minted before the claim: between the claim and the container's
        # creation nothing may fail but the worker itself.
        auth = oneoff_pull_auth(release, host)
        if _claim(release, host):
            _run(release, command, host, request, auth)
            return
    _resume(release, command, name)


def _state(release: Release) -> ReleaseCommandState:
    state = Release.objects.values_list("release_command", flat=True).get(pk=release.pk)
    return ReleaseCommandState(state)


def _claim(release: Release, host: Host) -> bool:
    return bool(
        Release.objects.filter(pk=release.pk, release_command=ReleaseCommandState.NOT_RUN).update(
            release_command=ReleaseCommandState.RUNNING, release_command_host=host
        )
    )


def _run(
    release: Release,
    command: str,
    host: Host,
    request: wire.CreateContainer,
    auth: wire.RegistryAuth | None,
) -> None:
    client = host_client(host)
    info = oneoff_start(client, request, auth)
    failpoint("release.running")  # the command under way, nothing recorded of its end
    _finish(release, command, client, _wait(client, info))


def _resume(release: Release, command: str, name: str) -> None:
    row = Release.objects.values("release_command", "release_command_host", "error").get(
        pk=release.pk
    )
    state = ReleaseCommandState(row["release_command"])
    host = Host.objects.filter(pk=row["release_command_host"]).first()
    client = host_client(host) if host else None
    if state == ReleaseCommandState.SUCCEEDED:
        log.info("release command of %s ran already: not again", release)
        if client:  # a worker that died before removing it left it there
            oneoff_remove(client, name)
        return
    if state == ReleaseCommandState.FAILED:
        if client:
            oneoff_remove(client, name)
        raise ReleasePhaseFailed(row["error"] or f"the release command ({command}) failed")
    info = _find(client, name)
    if client is None or info is None:
        reason = (
            f"the release command ({command}) was interrupted (the worker running the deploy "
            "stopped) and whether it finished is unknown; it is not run twice on its own: "
            "check what it did, then deploy again (roll back to this release) to run it"
        )
        _record(release, ReleaseCommandState.FAILED, reason)
        raise ReleasePhaseFailed(reason)
    log.info("release command of %s still there after its worker died: waiting for it", release)
    _finish(release, command, client, _wait(client, info))


def _wait(client: AgentClient, info: wire.ContainerInfo) -> Ended:
    try:
        return oneoff_wait(client, info, _timeout())
    except PaasError:
        # The agent stopped answering mid-wait: the deploy fails, and no
        # one-off of it may outlive that (removed if the agent can hear it).
        oneoff_remove(client, info.name)
        raise


def _find(client: AgentClient | None, name: str) -> wire.ContainerInfo | None:
    if client is None:
        return None
    try:
        return client.inspect(name)
    except ContainerMissing:
        return None


def _finish(release: Release, command: str, client: AgentClient, ended: Ended) -> None:
    """Record how the command ended, then remove its container; raise if it failed."""
    reason = _failure(command, ended)
    state = ReleaseCommandState.FAILED if reason else ReleaseCommandState.SUCCEEDED
    _record(release, state, reason)
    oneoff_remove(client, ended.name)
    if reason:
        raise ReleasePhaseFailed(reason)


def _record(release: Release, state: ReleaseCommandState, reason: str) -> None:
    # The reason goes in the release's error at once: a deploy resumed
    # before the release itself is failed fails it with the same words.
    Release.objects.filter(pk=release.pk, release_command=ReleaseCommandState.RUNNING).update(
        release_command=state, error=reason
    )


def _timeout() -> float:
    return float(settings.PAAS_RELEASE_TIMEOUT_S)


def _failure(command: str, ended: Ended) -> str:
    if ended.timed_out:
        return (
            f"the release command ({command}) did not finish within "
            f"{settings.PAAS_RELEASE_TIMEOUT_S:g} s"
        )
    if not ended.ok:
        return f"the release command ({command}) {_why(ended)}"
    return ""


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
