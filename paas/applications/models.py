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
