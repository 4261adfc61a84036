"""``python -m paas.web [--singletons SCHEDULE] DAPHNE_ARGS...``: the web
(daphne serving paas.asgi), and with ``--singletons`` also Celery beat and
the log follower (``run_singletons``, as ``manage.py singletons`` runs them)
on a thread of their own with their own event loop, never the web's.

Why in the web's process: each process that sets Django up pays ~45 MiB
before any work (Django, Celery, Channels, Redis clients, the models);
beat and the follower in a process of their own cost ~60 MiB PSS idle, in
the web ~10 (issue 13's footprint). Both already ran as the service user,
as the web does, so no privilege moves.

Kept single: only the process started with ``--singletons`` runs them, and
scripts/up's Procfile starts exactly one (a second web behind a balancer
runs without the flag; ``manage.py singletons`` still runs them alone).

If beat or the follower stops on its own, the web stops too and this exits
1, so scripts/up's supervisor starts the whole web again (after a backoff).
SIGTERM or Ctrl-C stops the web (daphne's handlers), then both singletons
(beat saves its schedule); the exit code is then 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
STOP_WAIT_S = 40.0  # beat's own stop wait (30 s) and the follower's last store


class SingletonsThread(threading.Thread):
    """Beat and the log follower on their own loop; ``failed`` when they
    ended on their own (then ``on_failure`` runs) or with an error."""

    def __init__(self, schedule: Path, on_failure: Callable[[], None]) -> None:
        super().__init__(name="singletons", daemon=True)
        self.schedule = schedule
        self.on_failure = on_failure
        self.failed = False
        self.stopping = False
        self.started_loop = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None

    def run(self) -> None:
        try:
            well = asyncio.run(self._main())
        except BaseException:
            log.exception("beat or the log follower stopped on an error")
            well = False
        self.started_loop.set()  # in case it failed before its loop ran
        if not well or not self.stopping:
            self.failed = True
            log.error("beat or the log follower stopped on its own: stopping the web")
            self.on_failure()

    async def _main(self) -> bool:
        from django.core.management.base import OutputWrapper

        from paas.core.management.commands.singletons import run_singletons

        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        self.started_loop.set()
        return await run_singletons(self.schedule, self.stop_event, OutputWrapper(sys.stdout))

    def stop(self) -> None:
        self.stopping = True
        self.started_loop.wait(STOP_WAIT_S)
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(STOP_WAIT_S)


def _stop_web() -> None:
    """From any thread: stop daphne's reactor (once it runs, if not yet)."""
    from twisted.internet import reactor

    reactor.callFromThread(reactor.callWhenRunning, reactor.stop)  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    parser.add_argument("--singletons", type=Path, metavar="SCHEDULE", help="beat's schedule file")
    args, daphne_args = parser.parse_known_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paas.settings")
    # First: daphne installs Twisted's asyncio reactor as it is imported.
    from daphne.cli import CommandLineInterface

    singletons = None
    if args.singletons is not None:
        import django

        django.setup()
        singletons = SingletonsThread(args.singletons, _stop_web)
        singletons.start()
    try:
        CommandLineInterface().run(daphne_args)
    finally:
        if singletons is not None:
            singletons.stop()
    return 1 if singletons is not None and singletons.failed else 0


if __name__ == "__main__":
    sys.exit(main())
