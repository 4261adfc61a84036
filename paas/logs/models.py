"""Runtime log lines, stored durably in the database (Redis only carries
them live), and the small bookkeeping rows the follower needs.

Every line of an app gets the next number of that app's sequence
(:class:`LogCounter`), so a browser that replays history and then listens
live can drop what it saw twice, and a notice can say how many it missed.
"""

from __future__ import annotations

from django.db import models

from paas.applications.models import App


class LogSource(models.TextChoices):
    BUILD = "build", "Build"
    APP = "app", "App"
    ROUTER = "router", "Router"
    PLATFORM = "platform", "Platform"


class LogLine(models.Model):
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveBigIntegerField(help_text="1, 2, 3... per app, in storing order")
    source = models.CharField(max_length=10, choices=LogSource.choices)
    process_type = models.CharField(max_length=30, blank=True)
    instance = models.CharField(max_length=63, blank=True, help_text="e.g. web.1")
    # The agent's container name, so a follower can tell two containers
    # (two releases' web.1) apart; empty for router and platform lines.
    container = models.CharField(max_length=63, blank=True)
    stream = models.CharField(max_length=6, blank=True, help_text="stdout or stderr")
    timestamp = models.DateTimeField(help_text="when the line was written (the agent's clock)")
    text = models.TextField()

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["app", "seq"], name="one_log_line_per_seq")]
        indexes = [models.Index(fields=["app", "timestamp"], name="log_line_app_time")]

    def __str__(self) -> str:
        return (
            f"{self.timestamp:%Y-%m-%dT%H:%M:%S} {self.source}[{self.instance}]: {self.text[:60]}"
        )


class LogCounter(models.Model):
    """The last sequence number given to a line of the app (one row per app)."""

    app = models.OneToOneField(App, on_delete=models.CASCADE, related_name="log_counter")
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.app_id}: {self.last_seq}"


class LogCursor(models.Model):
    """How far the follower got in one source (a container's log on an agent,
    the router's access log), written in the transaction that stores the
    lines: a restarted follower resumes exactly after the last stored line."""

    key = models.CharField(max_length=600, unique=True)
    position = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


class LogFollow(models.Model):
    """A container whose log the follower reads besides deploy's instances
    (registered with ``log_follow_register``, retired with
    ``log_follow_retire``): for containers the platform runs outside a
    release, and for the benchmark."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="log_follows")
    agent_url = models.URLField(help_text="the agent's API, e.g. https://127.0.0.1:7070")
    agent_token = models.CharField(max_length=200, editable=False)
    # The agent's pinned certificate (runtime_agent/host/tls.py), as on its Host.
    agent_fingerprint = models.CharField(max_length=95, blank=True)
    container = models.CharField(max_length=63)
    process_type = models.CharField(max_length=30, blank=True)
    instance = models.CharField(max_length=63, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent_url", "container"], name="one_follow_per_container"
            )
        ]

    def __str__(self) -> str:
        return f"{self.container} on {self.agent_url}"
