"""One deploy action at a time per app, across every worker.

Two releases of one app rolled out side by side could finish in the wrong
order (the older one made current last), and a scale racing a deploy could
place instances for a release that is being replaced. A Redis lock per app
serialises them. Redis holds no state here that matters: the lock expires
on its own if its worker dies (then the redelivered task resumes), and the
database stays the only truth.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

from paas.core.errors import PaasError

LOCK_TTL_S = 300
WAIT_S = 600


class AppBusy(PaasError):
    code = "app_busy"
    status = 409


@contextmanager
def app_lock(app_id: int) -> Iterator[None]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    lock = client.lock(f"paas:deploy:app:{app_id}", timeout=LOCK_TTL_S, blocking_timeout=WAIT_S)
    if not lock.acquire():
        raise AppBusy("Another deploy of this app is still running; try again shortly.")
    try:
        yield
    finally:
        with contextlib.suppress(redis.exceptions.LockError):  # expired meanwhile
            lock.release()
        client.close()
