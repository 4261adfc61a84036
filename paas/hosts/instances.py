"""One instance on its host: its container name and request, creating it
idempotently, recording what the agent says, and its health check."""

from __future__ import annotations

import hashlib
import http.client
import logging
import time
from typing import Any

from django.conf import settings
from django.utils import timezone

from paas.accounts.idranges import team_id_range
from paas.core.errors import PaasError
from paas.hosts.agent_client import AgentClient
from paas.hosts.live import instance_changed, instances_changed
from paas.hosts.models import DesiredState, Instance, InstanceState
from paas.hosts.pull_auth import pull_auth
from paas.hosts.services import host_client
from paas.hosts.upstreams import instance_upstream, publish_ip
from runtime_agent import wire
from runtime_agent.wire import ContainerState, RestartPolicyName

log = logging.getLogger(__name__)

HEALTH_POLL_S = 0.05
LOG_LINES_ON_FAILURE = 10


class HealthCheckFailed(PaasError):
    code = "health_check_failed"
    status = 409


def container_name(app: str, release: int, process_type: str, index: int) -> str:
    """``<app>.v<release>.<type>.<index>``: unique, readable in ``runc list``,
    and the idempotency key of the agent's create. A name too long for the
    agent (63) keeps a prefix of the app name plus a hash of the whole."""
    name = f"{app}.v{release}.{process_type}.{index}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{app[:20]}-{digest}.v{release}.{process_type[:10]}.{index}"


def instance_request(instance: Instance) -> wire.CreateContainer:
    """What the agent runs; the same instance always gives the same request,
    so a repeated create is answered with the existing container."""
    release = instance.release
    env = {**release.config, "PORT": str(instance.port)}
    cmd = None
    command = release.process_types.get(instance.process_type)
    if instance.process_type != "web" and command:
        cmd = ["/bin/sh", "-c", f"exec {command}"]
    return wire.CreateContainer(
        name=instance.container_name,
        image=release.image,
        cmd=cmd,
        env=env,
        hostname=instance.container_name.replace(".", "-")[:63],
        limits=wire.Limits(memory_bytes=instance.memory_bytes),
        ports=_published(instance),
        restart=wire.RestartPolicy(name=RestartPolicyName.ALWAYS),
        # The team's own uid range; one network group per app: its instances
        # reach each other, no other app's.
        id_range=team_id_range(team=instance.app.team),
        network_group=instance.app.name,
        labels={
            "paas.app": instance.app.name,
            "paas.release": str(release.number),
            "paas.process_type": instance.process_type,
            "paas.index": str(instance.index),
        },
    )


def _published(instance: Instance) -> list[wire.PortBinding]:
    ports = []
    if instance.tcp_port is not None and instance.host_port is not None:
        ports.append(
            wire.PortBinding(container_port=instance.tcp_port, host_port=instance.host_port)
        )
    if instance.route_port is not None:  # the router's way in (paas/hosts/upstreams.py)
        ports.append(
            wire.PortBinding(
                container_port=instance.port,
                host_port=instance.route_port,
                host_ip=publish_ip(instance),
                router_only=True,  # the agent answers only its router sources there
            )
        )
    return ports


_STATES = {
    ContainerState.CREATED: InstanceState.STOPPED,
    ContainerState.STARTING: InstanceState.STARTING,
    ContainerState.RUNNING: InstanceState.RUNNING,
    ContainerState.BACKOFF: InstanceState.BACKOFF,
    ContainerState.STOPPING: InstanceState.STOPPING,
    ContainerState.DEAD: InstanceState.CRASHED,
}


def observed_state(info: wire.ContainerInfo, desired: str) -> InstanceState:
    if info.state == ContainerState.EXITED:
        crashed = desired == DesiredState.RUNNING and (info.exit_code or info.oom_killed)
        return InstanceState.CRASHED if crashed else InstanceState.STOPPED
    return _STATES[info.state]


def observed_fields(instance: Instance, info: wire.ContainerInfo) -> dict[str, Any]:
    """What the agent's ``info`` says of the instance, in the row's fields.
    A crash-looping process that is up again between two crashes still
    shows why it last went down (exit code, OOM) until a restart by request
    (which resets the agent's restart count)."""
    relaunched = info.restart_count > 0 and info.exit_code is None and not info.oom_killed
    return {
        "state": observed_state(info, instance.desired),
        "address": info.address or instance.address,
        "exit_code": instance.exit_code if relaunched else info.exit_code,
        "oom_killed": instance.oom_killed if relaunched else info.oom_killed,
        "restart_count": info.restart_count,
    }


def instance_observe(instance: Instance, info: wire.ContainerInfo) -> None:
    fields = {**observed_fields(instance, info), "observed_at": timezone.now()}
    state = fields["state"]
    if state != InstanceState.RUNNING:
        fields["healthy"] = False
    Instance.objects.filter(pk=instance.pk).update(**fields)
    # Pages hear of a change, not of every poll (a health check polls often).
    changed = any(getattr(instance, k) != v for k, v in fields.items() if k != "observed_at")
    for key, value in fields.items():
        setattr(instance, key, value)
    if changed:
        instance_changed(instance)


def instance_ensure(instance: Instance) -> wire.ContainerInfo:
    """Create and start the instance's container (or find it made already)."""
    auth = pull_auth(app=instance.app, image=instance.release.image, host=instance.host)
    info = host_client(instance.host).create(instance_request(instance), registry_auth=auth)
    if info.state == ContainerState.EXITED and instance.desired == DesiredState.RUNNING:
        info = host_client(instance.host).start(instance.container_name)
    instance_observe(instance, info)
    return info


def instance_answers(address: str, port: int, path: str, *, timeout_s: float = 2.0) -> bool:
    conn = http.client.HTTPConnection(address, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Host": "health.check", "User-Agent": "paas-health"})
        return conn.getresponse().status < 500
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def exit_reason(client: AgentClient, info: wire.ContainerInfo, memory_bytes: int) -> str:
    if info.oom_killed:
        why = f"was killed for using more than its memory limit ({memory_bytes // 2**20} MiB)"
    elif info.exit_code is not None:
        why = f"exited with code {info.exit_code}"
    else:
        why = f"stopped ({info.state}{': ' + info.error if info.error else ''})"
    try:
        lines = [line.line for line in client.logs(info.name, tail=LOG_LINES_ON_FAILURE)]
    except PaasError:
        lines = []
    tail = "\n".join(lines)
    return f"{why}; its last log lines:\n{tail}" if tail else why


def instance_health_check(instance: Instance) -> None:
    """Wait until the instance answers HTTP on its port, or raise with a
    reason a person can act on. A crash ends the wait at once."""
    client = host_client(instance.host)
    timeout = settings.PAAS_HEALTH_TIMEOUT_S
    deadline = time.monotonic() + timeout
    label = f"{instance.process_type}.{instance.index}"
    while True:
        info = client.inspect(instance.container_name)
        instance_observe(instance, info)
        if info.state in (ContainerState.BACKOFF, ContainerState.EXITED, ContainerState.DEAD):
            why = exit_reason(client, info, instance.memory_bytes)
            raise HealthCheckFailed(f"{label} {why}")
        # Through the way the router will come (a route port on a host
        # across the network), so "healthy" means "reachable from the router".
        upstream = instance_upstream(instance) if info.address else None
        if (
            info.state == ContainerState.RUNNING
            and upstream is not None
            and instance_answers(*upstream, settings.PAAS_HEALTH_PATH)
        ):
            Instance.objects.filter(pk=instance.pk).update(healthy=True)
            instance.healthy = True
            instance_changed(instance)
            return
        if time.monotonic() > deadline:
            raise HealthCheckFailed(
                f"{label}: nothing answered on $PORT ({instance.port}) within {timeout:g} s "
                f"(GET {settings.PAAS_HEALTH_PATH}); the app must listen on 0.0.0.0:$PORT."
            )
        time.sleep(HEALTH_POLL_S)


def instance_remove(instance: Instance) -> None:
    """Stop and remove the container, then forget the instance. A host that
    does not answer keeps the row (desired: stopped) for the reconcile."""
    Instance.objects.filter(pk=instance.pk).update(desired=DesiredState.STOPPED, healthy=False)
    instance_changed(instance)
    client = host_client(instance.host)
    try:
        client.stop(instance.container_name, timeout_s=settings.PAAS_STOP_GRACE_S)
    except PaasError as exc:
        log.info("stop %s: %s", instance.container_name, exc.message)
    try:
        client.remove(instance.container_name, force=True)
    except PaasError as exc:
        log.warning("could not remove %s: %s", instance.container_name, exc.message)
        return
    pk, app_id = instance.pk, instance.app_id
    instance.delete()
    instances_changed(app_id=app_id, instance_ids=[pk])
