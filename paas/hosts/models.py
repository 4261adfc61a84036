from __future__ import annotations

from django.db import models

from paas.applications.models import App, Release


class HostState(models.TextChoices):
    READY = "ready", "Ready"
    UNREACHABLE = "unreachable", "Unreachable"
    DRAINING = "draining", "Draining"
    REMOVED = "removed", "Removed"


class Host(models.Model):
    """A machine running a runtime agent, joined with a one-time token."""

    name = models.CharField(max_length=100, unique=True)
    agent_url = models.URLField(help_text="The agent's API, e.g. https://127.0.0.1:7070")
    # SHA-256 of the certificate the agent presented when it joined (``AB:CD:...``):
    # every call to the agent checks the peer's certificate against it.
    tls_fingerprint = models.CharField(max_length=95, blank=True)
    # The agent's own bearer credential, handed out when it joined. The
    # control plane must present it, so it is kept (not hashed); never shown.
    token = models.CharField(max_length=200, blank=True, editable=False)
    state = models.CharField(max_length=12, choices=HostState.choices, default=HostState.READY)
    memory_bytes = models.PositiveBigIntegerField(default=0)
    cpus = models.PositiveIntegerField(default=0)
    labels = models.JSONField(default=dict, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Who its route ports answer, as its agent last accepted them (PUT
    # /v1/router-sources, paas/hosts/router_push.py); null until an agent
    # confirms a push (a new join, or a host that joined before pushes).
    router_sources = models.JSONField(null=True, blank=True, editable=False)
    # Pushes of its router sources that failed in a row, the last one's
    # error and when the heartbeat's sync may try again (an exponential
    # backoff, kept here so a restarted worker keeps it); a push that works
    # clears them (paas/hosts/router_push.py).
    router_sources_failures = models.PositiveIntegerField(default=0, editable=False)
    router_sources_error = models.TextField(blank=True, editable=False)
    router_sources_retry_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class JoinToken(models.Model):
    """A one-time token an admin hands to a new host. Stored hashed."""

    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16)
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL)
    # A re-join token: it may only join this (already joined) host again,
    # replacing its URL, pinned certificate and credential.
    rejoin = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.CASCADE, related_name="rejoin_tokens"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}... ({'used' if self.used_at else 'unused'})"


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class InstanceState(models.TextChoices):
    """What the agent last reported, in the platform's words."""

    PENDING = "pending", "Pending"  # placed, not created on its host yet
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    CRASHED = "crashed", "Crashed"
    BACKOFF = "backoff", "Crash-looping"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    LOST = "lost", "Lost"  # its host does not know it, or is unreachable


class Instance(models.Model):
    """One container of a release's process type on a host: the desired
    state (``desired``) beside what the agent last said (``state``)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="instances")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="instances")
    process_type = models.CharField(max_length=30)
    index = models.PositiveIntegerField()
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="instances")
    container_name = models.CharField(max_length=63, unique=True)
    memory_bytes = models.PositiveBigIntegerField()
    desired = models.CharField(
        max_length=10, choices=DesiredState.choices, default=DesiredState.RUNNING
    )
    state = models.CharField(
        max_length=10, choices=InstanceState.choices, default=InstanceState.PENDING
    )
    healthy = models.BooleanField(default=False, help_text="passed its health check")
    address = models.CharField(max_length=64, blank=True)
    port = models.PositiveIntegerField(default=8080)
    # Published TCP port: the container's ``tcp_port`` on the host's ``host_port``.
    # One app's slot keeps its host port from release to release, so the old
    # and the new instance share it for a while (the agent switches it when
    # the old one goes); no two apps share one (upstreams.instance_create).
    tcp_port = models.PositiveIntegerField(null=True, blank=True)
    host_port = models.PositiveIntegerField(null=True, blank=True)
    # A web instance on a host across the network: its $PORT published on
    # the host's address, where the router reaches it (paas/hosts/upstreams.py).
    route_port = models.PositiveIntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    oom_killed = models.BooleanField(default=False)
    restart_count = models.PositiveIntegerField(default=0)
    observed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["process_type", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["release", "process_type", "index"], name="one_instance_per_slot"
            ),
            models.UniqueConstraint(
                fields=["host", "route_port"], name="one_instance_per_route_port"
            ),
        ]

    def __str__(self) -> str:
        return self.container_name
