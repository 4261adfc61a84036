"""One deploy action at a time per app, across every worker.

Two releases of one app rolled out side by side could finish in the wrong
order (the older one made current last), and a scale racing a deploy could
place instances for a release that is being replaced. A Redis lock per app
serialises them. Redis holds no state here that matters: the database stays
the only truth.

The lock is a short lease (``PAAS_DEPLOY_LOCK_LEASE_S``) that a thread of
the holder renews while the work goes on. A holder that dies (a worker
SIGKILLed mid-deploy, a lost machine) stops renewing, so its lock is free
again within one lease, not after the longest a deploy may take; a long
deploy by a live holder keeps it as long as it needs. Only the holder's own
token renews or releases it (redis-py's lock compares tokens in Lua), so a
holder whose lease ran out (its process frozen longer than a lease) never
releases a lock someone else took since.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings
from redis.lock import Lock

from paas.core.errors import PaasError

log = logging.getLogger(__name__)

WAIT_S = 600
RENEWALS_PER_LEASE = 4  # a lease survives three missed renewals (a busy Redis)


class AppBusy(PaasError):
    code = "app_busy"
    status = 409


def app_lock_key(app_id: int) -> str:
    return f"paas:deploy:app:{app_id}"


@contextmanager
def app_lock(app_id: int) -> Iterator[None]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    # thread_local=False: the renewing thread must see the holder's token.
    lock = client.lock(
        app_lock_key(app_id),
        timeout=settings.PAAS_DEPLOY_LOCK_LEASE_S,
        blocking_timeout=WAIT_S,
        thread_local=False,
    )
    if not lock.acquire():
        client.close()
        raise AppBusy("Another deploy of this app is still running; try again shortly.")
    done = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(lock, done), name=f"app-lock-{app_id}", daemon=True
    )
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
        with contextlib.suppress(redis.exceptions.LockError):  # lost meanwhile (see above)
            lock.release()
        client.close()


def app_lock_held(app_id: int) -> bool:
    """Whether some live holder has the app's lock (a deploy or restart is under way)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return bool(client.exists(app_lock_key(app_id)))
    finally:
        client.close()


def _renew(lock: Lock, done: threading.Event) -> None:
    """Push the lease's end out again every quarter lease until ``done``."""
    every = settings.PAAS_DEPLOY_LOCK_LEASE_S / RENEWALS_PER_LEASE
    while not done.wait(every):
        try:
            lock.reacquire()
        except redis.exceptions.LockNotOwnedError:
            # Someone else holds it now: this holder was frozen past its
            # lease. Say so loudly; the database's conditional updates keep
            # the two from undoing each other's release states.
            log.error("lost the deploy lock %s while holding it", lock.name)
            return
        except redis.exceptions.RedisError as exc:
            log.warning("could not renew the deploy lock %s: %s", lock.name, exc)
