"""Prepare the platform's own registry (TLS certificate, token key,
config) once; scripts/up then runs `docker-registry serve` on it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from paas.builds.registry_server import prepare


class Command(BaseCommand):
    help = "Write the registry's config under $PAAS_DATA_DIR/registry (kept across runs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=5000)

    def handle(self, *args: Any, **options: Any) -> None:
        realm = settings.PANEL_URL.rstrip("/") + "/registry/token"
        setup = prepare(settings.DATA_DIR / "registry", port=options["port"], realm=realm)
        self.stdout.write(f"registry {setup.host}: config {setup.config_file}")
