from __future__ import annotations

from typing import TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest

# What request.user can be; services that only read check authentication
# themselves, services that write take a signed-in User.
AnyUser: TypeAlias = User | AnonymousUser


def signed_in(request: HttpRequest) -> User:
    """The request's user, for views behind login_required or token auth."""
    user = request.user
    if not isinstance(user, User):
        raise TypeError("this view needs a signed-in user")
    return user
