"""Run the router's nginx in the foreground (the Procfile's ``router`` line).

The live routes are rendered again with today's settings and tested first,
then this process becomes nginx (exec), so scripts/up's signals reach it.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from paas.router.services import router_prepare


class Command(BaseCommand):
    help = "Run the platform's router (nginx) in the foreground."

    def handle(self, *args: Any, **options: Any) -> None:
        argv = router_prepare()
        self.stdout.write(f"router: {' '.join(argv)}")
        self.stdout.flush()
        os.execv(argv[0], argv)
