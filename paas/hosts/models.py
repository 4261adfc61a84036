from __future__ import annotations

from django.db import models


class Host(models.Model):
    """A machine running a runtime agent (filled in by the scheduler issue)."""

    name = models.CharField(max_length=100, unique=True)
    agent_url = models.URLField(help_text="The agent's API, e.g. http://127.0.0.1:7070")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name
