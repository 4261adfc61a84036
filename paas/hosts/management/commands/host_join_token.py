"""Make a one-time join token for a new host; printed once, stored hashed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from paas.hosts.services import join_token_create


class Command(BaseCommand):
    help = "Print a one-time token a new host's agent joins with (runtime_agent.join)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--note", default="", help="what the token is for")

    def handle(self, *args: Any, **options: Any) -> None:
        _, raw = join_token_create(user=None, note=options["note"])
        self.stdout.write(raw)
