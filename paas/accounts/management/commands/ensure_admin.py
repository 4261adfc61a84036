"""Create the first admin account once; print its password that one time."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from paas.env import env_optional, env_str


class Command(BaseCommand):
    help = "Create the 'admin' superuser if no superuser exists yet."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already; leaving it as it is.")
            return
        username = env_str("PAAS_ADMIN_USER", "admin")
        given = env_optional("PAAS_ADMIN_PASSWORD")
        password = given or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        if given:
            self.stdout.write(f"Created admin account {username!r} with PAAS_ADMIN_PASSWORD.")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created admin account {username!r} with password: {password}\n"
                    "It is shown only this once; change it in the admin after signing in."
                )
            )
