"""Run the builder's housekeeping now (the beat task does it every
PAAS_HOUSEKEEPING_INTERVAL seconds)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from paas.builds.housekeeping import builds_housekeep


class Command(BaseCommand):
    help = (
        "Evict the build cache to its budget, remove finished build dirs, collect registry garbage."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--gc", action="store_true", help="run the registry's garbage collection even if "
            "no image was deleted since the last one",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(builds_housekeep(force_gc=options["gc"]).summary())
