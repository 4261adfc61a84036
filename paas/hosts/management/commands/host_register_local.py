"""Register this machine's own agent as a host (scripts/up runs it before
the agent starts): the same join as a remote host, with the credential
written where the local agent reads its token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from paas.hosts.models import Host, HostState
from paas.hosts.services import host_join, join_token_create


def _write_private(path: Path, text: str) -> None:
    # Like the agent makes its root: others may pass (user namespaces), not list.
    path.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


class Command(BaseCommand):
    help = "Join the local agent as host 'local' (idempotent) and write its credential."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="local")
        parser.add_argument("--agent-url", default="http://127.0.0.1:7070")
        parser.add_argument("--token-file", required=True, type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        name, url, token_file = options["name"], options["agent_url"], options["token_file"]
        host = Host.objects.filter(name=name).exclude(state=HostState.REMOVED).first()
        if host is None:
            _, raw = join_token_create(user=None, note=f"local agent {name}")
            host, _ = host_join(raw_token=raw, name=name, agent_url=url)
            self.stdout.write(f"Registered the local agent as host {name!r} ({url}).")
        elif host.agent_url != url:
            Host.objects.filter(pk=host.pk).update(agent_url=url)
        _write_private(token_file, host.token)
