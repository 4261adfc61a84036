"""Register this machine's own agent as a host (scripts/up runs it before
the agent starts): the same join as a remote host, with the credential
written where the local agent reads its token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from paas.core.errors import PaasError
from paas.hosts.services import host_register_local


def _write_private(path: Path, text: str) -> None:
    # Like the agent makes its root: others may pass (user namespaces), not list.
    path.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


class Command(BaseCommand):
    help = (
        "Join the local agent as host 'local' (idempotent; its URL and pinned certificate "
        "are brought up to date) and write its credential."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="local")
        parser.add_argument("--agent-url", default="https://127.0.0.1:7070")
        parser.add_argument(
            "--agent-fingerprint", required=True,
            help="SHA-256 of the agent's certificate (python -m runtime_agent.api.tls prints it)",
        )  # fmt: skip
        parser.add_argument("--token-file", required=True, type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            host = host_register_local(
                name=options["name"],
                agent_url=options["agent_url"],
                tls_fingerprint=options["agent_fingerprint"],
            )
        except PaasError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"The local agent is host {host.name!r} ({host.agent_url}, "
            f"certificate {host.tls_fingerprint})."
        )
        _write_private(options["token_file"], host.token)
