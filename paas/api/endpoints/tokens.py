"""Your own API tokens: list, create (the token is shown once), revoke."""

from __future__ import annotations

from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Status

from paas.accounts.models import ApiToken
from paas.accounts.services import (
    api_token_create,
    api_token_of_user,
    api_token_revoke,
    api_tokens_of,
)
from paas.accounts.types import signed_in
from paas.api.pagination import PageParams, paged
from paas.api.responses import answers
from paas.api.schemas import TokenCreated, TokenIn, TokenList, TokenOut

router = Router(tags=["tokens"])

TokenId = Annotated[int, Field(ge=1, le=2**62)]


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment else None


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": _iso(token.last_used_at),
        "revoked_at": _iso(token.revoked_at),
    }


@router.get("/tokens", response=answers(200, TokenList))
def token_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    """Your tokens, newest first (never the tokens themselves: only a prefix)."""
    rows, paging = paged(api_tokens_of(user=signed_in(request)), page)
    return {"tokens": [token_json(t) for t in rows], **paging}


@router.post("/tokens", response=answers(201, TokenCreated))
def token_new(request: HttpRequest, body: TokenIn) -> Status[dict[str, Any]]:
    token, raw = api_token_create(user=signed_in(request), name=body.name.strip() or "token")
    return Status(201, {**token_json(token), "token": raw})


@router.delete("/tokens/{token_id}", response=answers(200, TokenOut))
def token_revoke(request: HttpRequest, token_id: TokenId) -> dict[str, Any]:
    """Revoke one of your tokens (at once; revoking twice changes nothing)."""
    token = api_token_of_user(user=signed_in(request), token_id=token_id)
    api_token_revoke(token=token)
    token.refresh_from_db()
    return token_json(token)
