"""Create the first admin account once; print its password that one time."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the 'admin' superuser if no superuser exists yet."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already; leaving it as it is.")
            return
        username = os.environ.get("PAAS_ADMIN_USER", "admin")
        password = os.environ.get("PAAS_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("PAAS_ADMIN_PASSWORD"):
            self.stdout.write(f"Created admin account {username!r} with PAAS_ADMIN_PASSWORD.")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created admin account {username!r} with password: {password}\n"
                    "It is shown only this once; change it in the admin after signing in."
                )
            )
