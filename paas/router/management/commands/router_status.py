"""Print whether the router's nginx runs and which config generation it serves."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from paas.router.services import router_status


class Command(BaseCommand):
    help = "Say whether the router (nginx) runs and which config generation it serves."

    def handle(self, *args: Any, **options: Any) -> None:
        status = router_status()
        self.stdout.write(
            f"router {status.state.value}: pid {status.pid or '-'}, "
            f"live generation {status.live_generation or '-'}, "
            f"serving {status.serving_generation or '-'}, "
            f"http :{status.http_port}, https :{status.https_port}, in {status.directory}"
        )
        if not status.running:
            raise CommandError("the router is not serving")
