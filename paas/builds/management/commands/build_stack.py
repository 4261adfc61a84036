"""Make the stack (the base image of every buildpack build) ahead of time:
debootstrap, the settings' package list, one packed layer. About a minute
the first time; instant when the cache has it. The first build pushes it to
the registry (blobs the registry has are skipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from paas.builds.engine.stack import pack_stack
from paas.builds.engine_adapter import stack_spec


class Command(BaseCommand):
    help = "Build the stack's root filesystem and layer into PAAS_BUILD_CACHE_DIR."

    def handle(self, *args: Any, **options: Any) -> None:
        spec = stack_spec()
        blob, info = pack_stack(spec, Path(settings.PAAS_BUILD_CACHE_DIR), self.stdout.write)
        self.stdout.write(f"stack {spec.name} ready: {info.digest} ({info.size} bytes)")
