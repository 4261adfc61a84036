"""The release phase: a Procfile's ``release:`` command (migrations, say)
runs once, in a new container of the new release, before any instance of
it starts. If it fails, the release fails and nothing else changes.

The container is named after the release like an instance (so a retried
deploy finds the one it started instead of running the command twice) and
removed once it has ended.
"""

from __future__ import annotations

import contextlib
import time

from django.conf import settings

from paas.accounts.idranges import team_id_range
from paas.applications.models import DEFAULT_MEMORY_BYTES, Release
from paas.core.errors import PaasError
from paas.hosts.instances import container_name, exit_reason
from paas.hosts.scheduler import schedule
from paas.hosts.services import host_client
from runtime_agent import wire
from runtime_agent.wire import ContainerState, RestartPolicyName

RELEASE_PHASE = "release"
POLL_S = 0.1


class ReleasePhaseFailed(PaasError):
    code = "release_phase_failed"
    status = 409


def _request(release: Release, command: str) -> wire.CreateContainer:
    name = container_name(release.app.name, release.number, RELEASE_PHASE, 1)
    return wire.CreateContainer(
        name=name,
        image=release.image,
        cmd=["/bin/sh", "-c", f"exec {command}"],
        env={**release.config, "PORT": str(settings.PAAS_INSTANCE_PORT)},
        hostname=name.replace(".", "-")[:63],
        limits=wire.Limits(memory_bytes=DEFAULT_MEMORY_BYTES),
        restart=wire.RestartPolicy(name=RestartPolicyName.NO),
        id_range=team_id_range(team=release.app.team),
        network_group=release.app.name,
        labels={
            "paas.app": release.app.name,
            "paas.release": str(release.number),
            "paas.phase": RELEASE_PHASE,
        },  # fmt: skip
    )


def release_phase_run(release: Release) -> None:
    """Run the release command if the release has one; raise if it fails."""
    command = release.process_types.get(RELEASE_PHASE)
    if not command:
        return
    (host,) = schedule(
        app_id=release.app_id, process_type=RELEASE_PHASE,
        memory_bytes=DEFAULT_MEMORY_BYTES, count=1,
    )  # fmt: skip
    client = host_client(host)
    request = _request(release, command)
    info = client.create(request)
    try:
        deadline = time.monotonic() + settings.PAAS_RELEASE_TIMEOUT_S
        while info.state not in (ContainerState.EXITED, ContainerState.DEAD):
            if time.monotonic() > deadline:
                raise ReleasePhaseFailed(
                    f"the release command ({command}) did not finish within "
                    f"{settings.PAAS_RELEASE_TIMEOUT_S:g} s"
                )
            time.sleep(POLL_S)
            info = client.inspect(request.name)
        if info.exit_code != 0 or info.oom_killed:
            why = exit_reason(client, info, DEFAULT_MEMORY_BYTES)
            raise ReleasePhaseFailed(f"the release command ({command}) {why}")
    finally:
        with contextlib.suppress(PaasError):
            client.remove(request.name, force=True)
