"""Show what the builder keeps on disk, and by what (an operator's view of
PAAS_BUILD_CACHE_MAX_BYTES at work)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from paas.builds.engine.housekeeping import cache_entries
from paas.builds.housekeeping import cache_usage_by_team, disk_usage


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


class Command(BaseCommand):
    help = "Show the disk space the builder uses: cache, scratch, uploads, registry."

    def handle(self, *args: Any, **options: Any) -> None:
        for what, path, size in disk_usage():
            self.stdout.write(f"{_size(size):>10}  {what}  ({path})")
        budget = settings.PAAS_BUILD_CACHE_MAX_BYTES
        entries = sorted(
            cache_entries(settings.PAAS_BUILD_CACHE_DIR), key=lambda e: e.size, reverse=True
        )
        used = sum(e.size for e in entries)
        self.stdout.write(
            f"evictable cache: {_size(used)} of a {_size(budget)} budget "
            f"(PAAS_BUILD_CACHE_MAX_BYTES), {len(entries)} entries; largest:"
        )
        cache = settings.PAAS_BUILD_CACHE_DIR
        for entry in entries[:10]:
            where = entry.path.relative_to(cache)
            self.stdout.write(f"{_size(entry.size):>10}  {entry.kind}  {where}")
        self.stdout.write("evictable cache by team:")
        for label, size in cache_usage_by_team():
            self.stdout.write(f"{_size(size):>10}  {label}")
