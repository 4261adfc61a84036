"""Sign-in throttling: after PAAS_SIGNIN_MAX_PER_ACCOUNT failures in the
window an account is refused (even with the right password) with a clear
message; after PAAS_SIGNIN_MAX_PER_ADDRESS an address is; both end with the
window, and one account's failures do not lock another out."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from paas.accounts.models import SignInFailure

pytestmark = pytest.mark.django_db
HOME = "192.0.2.7"  # documentation addresses: only ever a header value here
ELSEWHERE = "198.51.100.9"


def sign_in(client: Any, username: str, password: str, address: str = HOME,
            url: str = "/login/") -> Any:  # fmt: skip
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in_as(client: Any) -> str | None:
    return client.session.get("_auth_user_id")


def age(seconds: int) -> None:
    """Move every failure back in time (row by row: SQLite date arithmetic
    in an UPDATE writes another text format)."""
    for failure in SignInFailure.objects.all():
        failure.at -= timedelta(seconds=seconds)
        failure.save(update_fields=["at"])


def fail(client: Any, username: str, times: int, address: str = HOME) -> None:
    for _ in range(times):
        response = sign_in(client, username, "wrong-password", address)
        assert "did not match" in response.content.decode()


def test_five_failures_refuse_the_account_even_with_its_password(client: Any, alice: Any) -> None:
    fail(client, "alice", 5)
    response = sign_in(client, "alice", "alice-pw-123")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Too many failed sign-ins for this account. Try again in 15 minutes" in page
    assert signed_in_as(client) is None
    assert SignInFailure.objects.count() == 5  # a refused try is not a failure: no lock extension
    # From another address too: this is the account's limit.
    elsewhere = sign_in(client, "Alice", "alice-pw-123", ELSEWHERE)
    assert "for this account" in elsewhere.content.decode()


def test_another_account_from_the_same_address_still_signs_in(client: Any, alice: Any,
                                                              bob: Any) -> None:  # fmt: skip
    fail(client, "alice", 5)
    assert "for this account" in sign_in(client, "alice", "guess").content.decode()
    response = sign_in(client, "bob", "bob-pw-123")
    assert response.status_code == 302
    assert signed_in_as(client) == str(bob.pk)


def test_an_address_is_refused_after_trying_many_accounts(client: Any, bob: Any,
                                                          settings: Any) -> None:  # fmt: skip
    settings.PAAS_SIGNIN_MAX_PER_ADDRESS = 4
    for name in ["ann", "ben", "cat", "dan"]:
        fail(client, name, 1)
    refused = sign_in(client, "bob", "bob-pw-123")
    assert "Too many failed sign-ins from your address" in refused.content.decode()
    assert signed_in_as(client) is None
    assert sign_in(client, "bob", "bob-pw-123", ELSEWHERE).status_code == 302


def test_the_refusal_ends_with_the_window(client: Any, alice: Any) -> None:
    fail(client, "alice", 5)
    age(seconds=901)
    assert sign_in(client, "alice", "alice-pw-123").status_code == 302


def test_the_wait_shown_is_until_the_oldest_counted_failure_leaves(client: Any,
                                                                   alice: Any) -> None:  # fmt: skip
    fail(client, "alice", 5)
    age(seconds=850)
    page = sign_in(client, "alice", "alice-pw-123").content.decode()
    found = re.search(r"Try again in (\d+) seconds", page)
    assert found is not None and 0 < int(found.group(1)) <= 50, page


def test_a_success_forgets_the_accounts_failures(client: Any, alice: Any) -> None:
    fail(client, "alice", 4)
    assert sign_in(client, "alice", "alice-pw-123").status_code == 302
    client.logout()
    fail(client, "alice", 4)
    assert sign_in(client, "alice", "alice-pw-123").status_code == 302


def test_the_admin_sign_in_is_throttled_too(client: Any, admin_user: Any) -> None:
    for _ in range(5):
        sign_in(client, "admin", "nope", url="/admin/login/")
    page = sign_in(client, "admin", "password", url="/admin/login/").content.decode()
    assert "Too many failed sign-ins for this account" in page
    assert signed_in_as(client) is None


def test_a_post_without_a_password_forgets_no_failure(client: Any, alice: Any) -> None:
    fail(client, "alice", 4)
    client.post("/login/", {"username": "alice", "password": ""}, REMOTE_ADDR=HOME)
    fail(client, "alice", 1)
    assert "for this account" in sign_in(client, "alice", "alice-pw-123").content.decode()
