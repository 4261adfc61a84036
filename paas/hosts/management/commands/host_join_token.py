"""Make a one-time join token for a new host; printed once, stored hashed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from paas.core.errors import PaasError
from paas.hosts.models import Host, HostState
from paas.hosts.services import join_token_create


class Command(BaseCommand):
    help = "Print a one-time token a new host's agent joins with (runtime_agent.join)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--note", default="", help="what the token is for")
        parser.add_argument(
            "--rejoin", metavar="HOST",
            help="a token that joins this host again (new certificate, URL or credential)",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        rejoin = None
        if options["rejoin"]:
            rejoin = (
                Host.objects.exclude(state=HostState.REMOVED).filter(name=options["rejoin"]).first()
            )
            if rejoin is None:
                raise CommandError(f"No host named {options['rejoin']!r} has joined.")
        try:
            _, raw = join_token_create(user=None, note=options["note"], rejoin=rejoin)
        except PaasError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(raw)
