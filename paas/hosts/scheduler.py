"""Where a new instance goes: a ready host with enough free memory, spreading
one process type of one app across hosts (fewest of its siblings first, then
most free memory)."""

from __future__ import annotations

from collections import Counter

from django.db.models import Sum

from paas.core.errors import PaasError
from paas.hosts.models import DesiredState, Host, HostState, Instance


class NothingFits(PaasError):
    code = "nothing_fits"
    status = 409


def _reserved_by_host() -> dict[int, int]:
    rows = (
        Instance.objects.filter(desired=DesiredState.RUNNING)
        .values("host_id")
        .annotate(total=Sum("memory_bytes"))
    )
    return {row["host_id"]: row["total"] or 0 for row in rows}


def schedule(*, app_id: int, process_type: str, memory_bytes: int, count: int) -> list[Host]:
    """Hosts for ``count`` new instances, in order; raises NothingFits."""
    hosts = list(Host.objects.filter(state=HostState.READY))
    if not hosts:
        raise NothingFits(
            "No host is ready to run instances: join a host or check that its agent answers."
        )
    reserved = _reserved_by_host()
    siblings = Counter(
        Instance.objects.filter(
            app_id=app_id, process_type=process_type, desired=DesiredState.RUNNING
        ).values_list("host_id", flat=True)
    )
    chosen = []
    for _ in range(count):
        fits = [h for h in hosts if h.memory_bytes - reserved.get(h.pk, 0) >= memory_bytes]
        if not fits:
            free = max(h.memory_bytes - reserved.get(h.pk, 0) for h in hosts)
            raise NothingFits(
                f"No ready host has {memory_bytes // 2**20} MiB free for another "
                f"{process_type} instance (the most free is {max(free, 0) // 2**20} MiB): "
                "scale down, lower the memory limit or add a host."
            )
        best = min(fits, key=lambda h: (siblings[h.pk], -(h.memory_bytes - reserved.get(h.pk, 0))))
        chosen.append(best)
        siblings[best.pk] += 1
        reserved[best.pk] = reserved.get(best.pk, 0) + memory_bytes
    return chosen
