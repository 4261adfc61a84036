"""``manage.py singletons``: the control plane's two run-once processes in
one: Celery beat (a thread) and the log follower (the event loop; see
paas/logs/follower.py).

Why one process: each needs exactly one copy per control plane, both run as
the service user, and each alone was a whole Django process (beat ~92 MiB
PSS idle, the follower ~87 MiB: issue 13's footprint). Beat here sends its
tasks by name without importing them (the worker runs them), so it adds a
few MiB to the follower. If either stops, the other is stopped and the
command exits non-zero (a supervisor then sees it die). SIGTERM or Ctrl-C
stops both; beat saves its schedule. scripts/up runs ``run_singletons``
inside the web's process instead (paas/web.py: one Django process fewer);
``celery -A paas beat`` and ``manage.py logs_follow`` still run them apart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from celery import beat
from django.core.management.base import BaseCommand, CommandError, CommandParser

from paas.celery import app as celery_app
from paas.logs.management.commands.logs_follow import follow_logs

log = logging.getLogger(__name__)
# Beat sleeps until its next due task; this bounds how long a stop waits for it.
BEAT_MAX_INTERVAL_S = 5
BEAT_STOP_WAIT_S = 30.0


class BeatThread(threading.Thread):
    """Celery beat's scheduler loop; ``on_exit`` runs when it ends, for any reason."""

    def __init__(self, schedule: Path, on_exit: Any) -> None:
        super().__init__(name="beat", daemon=True)
        self.service = beat.Service(
            celery_app, schedule_filename=str(schedule), max_interval=BEAT_MAX_INTERVAL_S
        )
        self.on_exit = on_exit
        self.failed = False

    def run(self) -> None:
        try:
            celery_app.set_current()
            self.service.start()
        except BaseException:
            self.failed = True
            log.exception("beat stopped on an error")
        finally:
            self.on_exit()

    def stop(self) -> None:
        self.service.stop(wait=False)
        self.join(BEAT_STOP_WAIT_S)


async def run_singletons(schedule: Path, stop: asyncio.Event, out: Any) -> bool:
    """Beat (a thread) and the log follower (this loop) until ``stop`` is set
    or one of them ends on its own. True when stopped by ``stop`` with both
    well; beat's schedule is saved either way. Also run by ``manage.py web
    --singletons`` on a thread of its own, beside the web's loop."""
    loop = asyncio.get_running_loop()
    asked = asyncio.Event()

    async def stopped_by_caller() -> None:
        await stop.wait()
        asked.set()

    # The follower stops on ``ended``: set by the caller or by beat's end.
    ended = asyncio.Event()
    relay = asyncio.ensure_future(stopped_by_caller())
    relay.add_done_callback(lambda _: ended.set())
    beat_thread = BeatThread(schedule, lambda: loop.call_soon_threadsafe(ended.set))
    beat_thread.start()
    try:
        await follow_logs(ended, out)
    finally:
        ended.set()
        relay.cancel()
        await asyncio.to_thread(beat_thread.stop)
    return asked.is_set() and not beat_thread.failed


class Command(BaseCommand):
    help = "Run Celery beat and the log follower (one of each per control plane)."
    # scripts/up ran Django's checks (migrate) just before; here they would
    # import every view and the API (~25 MiB) this process never serves.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--schedule", required=True, type=Path, help="beat's schedule file")

    def handle(self, *args: Any, **options: Any) -> None:
        if not asyncio.run(self._run(options["schedule"])):
            raise CommandError("beat or the log follower stopped on its own")

    async def _run(self, schedule: Path) -> bool:
        """True when stopped by a signal; False when one part stopped by itself."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_singletons(schedule, stop, self.stdout)
