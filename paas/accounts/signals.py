from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save
from django.dispatch import receiver

from paas.accounts.services import team_ensure_personal


@receiver(post_save, sender=get_user_model())
def give_every_user_a_personal_team(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    # Users made by createsuperuser or the admin must own a team too, so the
    # hook lives here rather than in one service every path would have to call.
    if created:
        team_ensure_personal(user=instance)
