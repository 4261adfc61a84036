"""Lists are paged with ``?limit=`` (1-500, default 100) and ``?offset=``;
a list's body carries ``total`` and ``next_offset`` (null on the last page)
beside its items, under the same key as before paging existed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, overload

from django.db.models import Model, QuerySet
from ninja import Field, Schema

M = TypeVar("M", bound=Model)
T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class PageParams(Schema):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="items per page")
    offset: int = Field(0, ge=0, le=10**9, description="items to skip")


@overload
def paged(rows: QuerySet[M], page: PageParams) -> tuple[list[M], dict[str, Any]]: ...
@overload
def paged(rows: Sequence[T], page: PageParams) -> tuple[list[T], dict[str, Any]]: ...
def paged(rows: Any, page: PageParams) -> tuple[list[Any], dict[str, Any]]:
    """One page of ``rows`` (a query: only that page is fetched) and the
    paging fields of the body."""
    total = rows.count() if isinstance(rows, QuerySet) else len(rows)
    items = list(rows[page.offset : page.offset + page.limit])
    end = page.offset + len(items)
    return items, {"total": total, "next_offset": end if end < total else None}
