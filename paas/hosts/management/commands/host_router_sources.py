"""Push router sources to hosts now (the heartbeat does it by itself when a
host's recorded list is not the wanted one: see paas/hosts/router_push.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from paas.core.errors import PaasError
from paas.hosts.models import Host, HostState
from paas.hosts.router_push import host_router_sources_push


class Command(BaseCommand):
    help = (
        "Send hosts the addresses their route ports answer (PAAS_ROUTER_SOURCES, or the "
        "address this machine reaches each from) and show what each agent accepted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("hosts", nargs="*", metavar="HOST", help="host names")
        parser.add_argument("--all", action="store_true", help="every joined host")

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["hosts"]
        if bool(names) == bool(options["all"]):
            raise CommandError("Name the hosts, or give --all.")
        hosts = Host.objects.exclude(state=HostState.REMOVED)
        if names:
            hosts = hosts.filter(name__in=names)
            if missing := set(names) - {h.name for h in hosts}:
                raise CommandError(f"No joined host named {', '.join(sorted(missing))}.")
        failed = 0
        for host in hosts:
            try:
                answer = host_router_sources_push(host=host)
            except PaasError as exc:
                failed += 1
                self.stderr.write(f"{host.name}: not pushed: {exc.message}")
                continue
            said = answer.message or "route ports answer " + (", ".join(answer.in_effect)
                                                              or "no one")  # fmt: skip
            self.stdout.write(f"{host.name}: {said}")
        if failed:
            raise CommandError(f"{failed} host(s) did not take their router sources.")
