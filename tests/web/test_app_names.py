from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from paas.applications.validators import validate_app_name


@pytest.mark.parametrize("name", ["a", "my-app", "app2", "a" * 63, "0day", "x-1-y"])
def test_it_accepts_dns_labels(name):
    validate_app_name(name)


@pytest.mark.parametrize(
    "name",
    ["a;touch /tmp/x", "../x", "A", "-a", "a-", "a" * 64, "café", "my_app", "a.b", "", " a"],
)
def test_it_refuses_names_that_are_not_dns_labels(name):
    with pytest.raises(ValidationError) as exc:
        validate_app_name(name)
    assert exc.value.messages[0]  # a message a person can act on


def test_it_says_how_long_a_too_long_name_is():
    with pytest.raises(ValidationError, match="at most 63 characters; this one has 64"):
        validate_app_name("a" * 64)
