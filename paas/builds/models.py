from __future__ import annotations

import uuid

from django.db import models

from paas.applications.models import App


class BuildState(models.TextChoices):
    QUEUED = "queued", "Queued"
    BUILDING = "building", "Building"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINAL_STATES = {BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED}


class Build(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="builds")
    number = models.PositiveIntegerField(help_text="1, 2, 3... per app")
    state = models.CharField(max_length=10, choices=BuildState.choices, default=BuildState.QUEUED)
    archive_name = models.CharField(max_length=255, help_text="The file name as uploaded.")
    archive_path = models.CharField(max_length=500)
    archive_size = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    # Renewed by the worker while it builds; an expired lease means the
    # worker died and the build is failed rather than left "building".
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Taken when the build starts, given back if it fails: successful builds
    # of an app are tagged v1, v2, ... in the registry.
    version = models.PositiveIntegerField(null=True, blank=True)
    # Filled by the builder.
    kind = models.CharField(max_length=20, blank=True)
    image_ref = models.CharField(max_length=500, blank=True)
    image_digest = models.CharField(max_length=100, blank=True)
    image_size = models.BigIntegerField(null=True, blank=True)
    process_types = models.JSONField(default=dict, blank=True)
    steps = models.JSONField(default=list, blank=True)
    duration_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["app", "number"], name="one_build_number_per_app"),
            models.UniqueConstraint(fields=["app", "version"], name="one_build_per_version"),
        ]

    def __str__(self) -> str:
        return f"{self.app.name} build #{self.number}"

    @property
    def digest_ref(self) -> str:
        """The image pinned by digest: what a deploy runs."""
        if not self.image_digest:
            return ""
        return f"{self.image_ref.rsplit(':', 1)[0]}@{self.image_digest}"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class BuildLogLine(models.Model):
    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["build", "seq"], name="one_line_per_seq")]

    def __str__(self) -> str:
        return f"{self.seq}: {self.text[:60]}"


class BuildArg(models.Model):
    """A Dockerfile ``ARG`` value for every build of the app. Not secret: it
    is shown on the app page and may end up in the image (like Docker's)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="build_args")
    name = models.CharField(max_length=64)
    value = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["app", "name"], name="one_arg_per_name")]

    def __str__(self) -> str:
        return f"{self.app_id} ARG {self.name}"


class BuildSecret(models.Model):
    """A build secret: a file under /run/secrets in RUN steps. Stored
    encrypted (paas.builds.secretbox), never shown again after it is entered
    (pages and the API list names only) and masked in every log line."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="build_secrets")
    name = models.CharField(max_length=64)
    sealed = models.TextField(help_text="The value, encrypted; never displayed.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["app", "name"], name="one_secret_per_name")]

    def __str__(self) -> str:
        return f"{self.app_id} secret {self.name}"
