"""Running a command once in a new container of a release, to its end.

Two users: the release phase (a Procfile ``release:`` command, before a
release switches) and ``paas run -- CMD`` (a one-off in the current
release, like ``heroku run``). The container gets the release's image,
config and the app's network group and team id range, never restarts, and
is removed once it has ended, whatever happened.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User

from paas.accounts.idranges import team_id_range
from paas.applications.audit import audit_record
from paas.applications.models import DEFAULT_MEMORY_BYTES, App, AuditResult, Release, ReleaseState
from paas.core.errors import Conflict, PaasError, ValidationFailed
from paas.hosts.agent_client import AgentClient
from paas.hosts.instances import container_name
from paas.hosts.models import Host
from paas.hosts.pull_auth import pull_auth
from paas.hosts.scheduler import schedule
from paas.hosts.services import host_client
from runtime_agent import wire
from runtime_agent.wire import ContainerState, RestartPolicyName

POLL_S = 0.1
ONEOFF = "run"
MAX_COMMAND = 4096
OUTPUT_LINES = 1000  # what a one-off's caller gets back (the agent keeps more)


@dataclass(frozen=True)
class Ended:
    """How a one-off ended. ``exit_code`` is None if it was stopped another way."""

    name: str
    exit_code: int | None
    oom_killed: bool
    timed_out: bool
    output: list[str]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.oom_killed and not self.timed_out


def oneoff_request(release: Release, name: str, command: str, kind: str) -> wire.CreateContainer:
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
            "paas.phase": kind,
        },  # fmt: skip
    )


def run_to_end(request: wire.CreateContainer, release: Release, timeout_s: float) -> Ended:
    """Create ``request`` on a host with room, wait for its end (at most
    ``timeout_s``), and remove it. Raises a PaasError if no host can take it."""
    host = oneoff_host(release)
    client = host_client(host)
    info = oneoff_start(client, request, oneoff_pull_auth(release, host))
    try:
        return oneoff_wait(client, info, timeout_s)
    finally:
        oneoff_remove(client, request.name)


def oneoff_host(release: Release) -> Host:
    """A ready host with room for a one-off of ``release``; raises NothingFits."""
    (host,) = schedule(
        app_id=release.app_id, process_type=ONEOFF, memory_bytes=DEFAULT_MEMORY_BYTES, count=1
    )
    return host


def oneoff_start(
    client: AgentClient, request: wire.CreateContainer, auth: wire.RegistryAuth | None
) -> wire.ContainerInfo:
    """Create (and start) the one-off with ``auth`` (oneoff_pull_auth); the
    same request again answers the container made the first time (the
    agent's create is idempotent by name)."""
    return client.create(request, registry_auth=auth)


def oneoff_pull_auth(release: Release, host: Host) -> wire.RegistryAuth | None:
    return pull_auth(app=release.app, image=release.image, host=host)


def oneoff_wait(client: AgentClient, info: wire.ContainerInfo, timeout_s: float) -> Ended:
    """Wait for the one-off's end (at most ``timeout_s``); it is not removed."""
    deadline = time.monotonic() + timeout_s
    while info.state not in (ContainerState.EXITED, ContainerState.DEAD):
        if time.monotonic() > deadline:
            return _ended(client, info, timed_out=True)
        time.sleep(POLL_S)
        info = client.inspect(info.name)
    return _ended(client, info, timed_out=False)


def oneoff_remove(client: AgentClient, name: str) -> None:
    """Remove the one-off (killed if it still runs); one already gone is fine."""
    with contextlib.suppress(PaasError):
        client.remove(name, force=True)


def _ended(client: AgentClient, info: wire.ContainerInfo, *, timed_out: bool) -> Ended:
    try:
        output = [line.line for line in client.logs(info.name, tail=OUTPUT_LINES)]
    except PaasError:
        output = []
    return Ended(info.name, info.exit_code, info.oom_killed, timed_out, output)


def oneoff_run(*, user: User, app: App, command: str) -> Ended:
    """``paas run -- CMD``: the command in a new container of the current
    release; its output and exit code once it has ended (callers with
    ``deploy`` rights on the app: the view checks)."""
    command = command.strip()
    if not command or len(command) > MAX_COMMAND or "\0" in command:
        raise ValidationFailed(
            f"Give a command to run (at most {MAX_COMMAND} characters).", field="command"
        )
    release = Release.objects.filter(app=app, state=ReleaseState.CURRENT).first()
    if release is None:
        raise Conflict(f"{app.name} has no running release yet: deploy it first.")
    name = container_name(app.name, release.number, f"{ONEOFF}{secrets.token_hex(3)}", 1)
    request = oneoff_request(release, name, command, ONEOFF)
    ended = run_to_end(request, release, settings.PAAS_RUN_TIMEOUT_S)
    audit_record(
        actor=user, app=app, action="run", target=command[:200],
        result=AuditResult.OK if ended.ok else AuditResult.FAILED,
        detail=f"exit code {ended.exit_code}" + (" (timed out)" if ended.timed_out else ""),
    )  # fmt: skip
    return ended
