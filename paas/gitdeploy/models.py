"""Per-app settings for deploying from git (push and webhooks), and the
webhook deliveries already seen (so a redelivery deploys once)."""

from __future__ import annotations

from django.db import models

from paas.applications.models import App
from paas.gitdeploy.hostkeys import HostKeyOrigin

DEFAULT_DEPLOY_BRANCH = "main"


class GitSettings(models.Model):
    """How an app deploys from git. Absent means the defaults: pushes to
    ``main`` deploy, no webhook, no remote repository."""

    app = models.OneToOneField(App, on_delete=models.CASCADE, related_name="git_settings")
    deploy_branch = models.CharField(max_length=200, default=DEFAULT_DEPLOY_BRANCH)
    # https:// or ssh:// (or scp-like user@host:path) only, checked when set.
    repo_url = models.CharField(max_length=500, blank=True)
    # Both sealed with a key derived from SECRET_KEY; never shown again.
    webhook_secret_sealed = models.TextField(blank=True)
    repo_credentials_sealed = models.TextField(blank=True)
    # The ssh host keys the repository's host must present, one "TYPE BASE64"
    # a line (paas/gitdeploy/hostkeys.py): set by the operator, or recorded at
    # the first successful fetch when none was set; checked strictly after.
    ssh_host_keys = models.TextField(blank=True)
    ssh_host_keys_origin = models.CharField(max_length=20, choices=HostKeyOrigin.choices,
                                            blank=True)  # fmt: skip
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.app_id} deploys {self.deploy_branch}"


class WebhookDelivery(models.Model):
    """One accepted push event. The unique constraints are the replay guard:
    the same delivery id, or the same commit, is recorded (and deployed) once."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="webhook_deliveries")
    delivery_id = models.CharField(max_length=100)
    commit = models.CharField(max_length=64)
    ref = models.CharField(max_length=250)
    build = models.ForeignKey(
        "builds.Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True)
    # Set by the worker that fetches it (a conditional update: one wins).
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["app", "delivery_id"], name="one_delivery_per_id"),
            models.UniqueConstraint(fields=["app", "commit"], name="one_delivery_per_commit"),
        ]

    def __str__(self) -> str:
        return f"{self.app_id} delivery {self.delivery_id} ({self.commit[:12]})"
