"""Print a token for the platform's registry (root: it needs the signing
key), for an operator's tools: ``skopeo inspect --registry-token TOKEN``,
``curl -H "Authorization: Bearer TOKEN"``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from paas.builds.registry_access import registry_signer
from paas.builds.registry_tokens import BadScope, parse_scopes


class Command(BaseCommand):
    help = "Print a registry token for a scope, e.g. repository:my-app:pull."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scope", nargs="+", help="type:name:actions, e.g. repository:app:pull")
        parser.add_argument("--ttl", type=int, default=settings.PAAS_REGISTRY_TOKEN_TTL_S)

    def handle(self, *args: Any, **options: Any) -> None:
        signer = registry_signer()
        if signer is None:
            raise CommandError("the registry is not in token mode (PAAS_REGISTRY_TOKEN_KEY unset)")
        try:
            access = parse_scopes(" ".join(options["scope"]))
        except BadScope as exc:
            raise CommandError(str(exc)) from None
        if not 1 <= options["ttl"] <= 86400:
            raise CommandError("--ttl must be 1-86400 seconds")
        self.stdout.write(signer.mint(access, subject="operator", ttl_s=options["ttl"]))
