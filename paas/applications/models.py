from __future__ import annotations

from django.db import models

from paas.accounts.models import Team
from paas.applications.validators import validate_app_name


class App(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="apps")
    # Unique platform-wide: it is the app's host name under PAAS_DOMAIN.
    name = models.CharField(max_length=63, unique=True, validators=[validate_app_name])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ConfigVar(models.Model):
    """One environment variable of an app. The value is a secret: it is
    never logged, never put in an audit entry, and shown (masked unless the
    viewer owns the app) only on the app's page."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="config_vars")
    key = models.CharField(max_length=100)
    value = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["app", "key"], name="one_value_per_key")]

    def __str__(self) -> str:
        return f"{self.app_id}:{self.key}=***"

    def __repr__(self) -> str:  # a repr in a traceback or log must not leak the value
        return f"<ConfigVar {self.key}=***>"


class RegistryCredential(models.Model):
    """A username and password for another registry, to deploy images from
    it (paas/applications/registry_credentials.py). The password is sealed
    (paas.builds.secretbox), never shown again, never logged; it reaches only
    the worker that resolves the image and the agent that pulls it, for
    that pull."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="registry_credentials")
    registry = models.CharField(max_length=255)  # host[:port], as image references start
    username = models.CharField(max_length=255)
    sealed = models.TextField(help_text="The password, encrypted; never displayed.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["registry"]
        constraints = [
            models.UniqueConstraint(fields=["app", "registry"], name="one_credential_per_registry")
        ]

    def __str__(self) -> str:
        return f"{self.app_id} {self.username}@{self.registry}"

    def __repr__(self) -> str:
        return f"<RegistryCredential {self.username}@{self.registry} ***>"


class ReleaseState(models.TextChoices):
    PENDING = "pending", "Pending"
    DEPLOYING = "deploying", "Deploying"
    CURRENT = "current", "Current"
    FAILED = "failed", "Failed"
    RETIRED = "retired", "Retired"


class ReleaseCommandState(models.TextChoices):
    """Where a release's release command (the Procfile's ``release:``) is:
    it runs at most once per release (paas/hosts/release_phase.py)."""

    NOT_RUN = "", "Not run"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ReleaseCause(models.TextChoices):
    BUILD = "build", "Build"
    CONFIG = "config", "Config change"
    ROLLBACK = "rollback", "Rollback"
    IMAGE = "image", "Image"


class Release(models.Model):
    """What runs: an image (by digest), a snapshot of the config vars and the
    process types. The three never change once written; a config change or
    a rollback makes a new release. Only ``state``, ``error`` and the
    release command's progress move, as the release is rolled out."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="releases")
    number = models.PositiveIntegerField(help_text="v1, v2, ... per app")
    image = models.CharField(max_length=500, help_text="registry/name@sha256:...")
    config = models.JSONField(default=dict, blank=True)
    process_types = models.JSONField(default=dict, blank=True)
    cause = models.CharField(max_length=10, choices=ReleaseCause.choices)
    description = models.CharField(max_length=200, blank=True)
    build = models.ForeignKey(
        "builds.Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="releases"
    )
    state = models.CharField(
        max_length=10, choices=ReleaseState.choices, default=ReleaseState.PENDING
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    # The release command's progress, moved by conditional updates only, and
    # the host its container was made on: a deploy resumed after its worker
    # died finds that container again rather than running the command twice.
    release_command = models.CharField(
        max_length=10, choices=ReleaseCommandState.choices, blank=True,
        default=ReleaseCommandState.NOT_RUN,
    )  # fmt: skip
    release_command_host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["app", "number"], name="one_release_number_per_app")
        ]

    def __str__(self) -> str:
        return f"{self.app.name} v{self.number}"

    @property
    def label(self) -> str:
        return f"v{self.number}"


DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024


class Formation(models.Model):
    """How many instances of a process type run, and with how much memory."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="formation")
    process_type = models.CharField(max_length=30)
    count = models.PositiveIntegerField(default=1)
    memory_bytes = models.PositiveBigIntegerField(default=DEFAULT_MEMORY_BYTES)
    # A TCP port of the container published on its host (docker run -p), for
    # services that are not HTTP; each instance gets a free host port.
    tcp_port = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["process_type"]
        constraints = [
            models.UniqueConstraint(fields=["app", "process_type"], name="one_formation_per_type")
        ]

    def __str__(self) -> str:
        return f"{self.app_id}:{self.process_type}={self.count}"


class AuditResult(models.TextChoices):
    OK = "ok", "OK"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused"


class AuditEntry(models.Model):
    """Who did what, when, and how it ended. Never holds a config value."""

    actor = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="kept if the user goes")
    app = models.ForeignKey(
        App, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    # The team the action happened in: an app's entries carry its team, and
    # so do team actions (members, roles) and an app's deletion, which have
    # no app row left to point at. Platform actions (hosts) have neither.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    action = models.CharField(max_length=50)
    target = models.CharField(max_length=200, blank=True)
    result = models.CharField(max_length=10, choices=AuditResult.choices, default=AuditResult.OK)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_name or 'platform'} {self.action} {self.target}: {self.result}"
