from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from paas.env import env_bool, env_int, env_list, env_str, secret_key


def test_it_reads_booleans_in_the_usual_spellings(monkeypatch):
    for raw, expected in [("1", True), ("true", True), ("On", True), ("0", False), ("no", False)]:
        monkeypatch.setenv("X_FLAG", raw)
        assert env_bool("X_FLAG", not expected) is expected


def test_it_refuses_a_boolean_it_does_not_understand(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        env_bool("X_FLAG", False)


def test_it_refuses_a_number_that_is_not_one(monkeypatch):
    monkeypatch.setenv("X_NUM", "12a")
    with pytest.raises(ImproperlyConfigured, match="X_NUM='12a' is not a whole number"):
        env_int("X_NUM", 1)


def test_it_enforces_a_minimum(monkeypatch):
    monkeypatch.setenv("X_NUM", "3")
    with pytest.raises(ImproperlyConfigured, match="below the minimum of 5"):
        env_int("X_NUM", 10, minimum=5)


def test_it_uses_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("X_UNSET", raising=False)
    assert env_int("X_UNSET", 7) == 7
    assert env_str("X_UNSET", "d") == "d"
    assert env_list("X_UNSET", ["a"]) == ["a"]


def test_it_splits_lists_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    assert env_list("X_LIST", []) == ["a.example", "b.example"]


def test_it_reads_a_secret_from_a_file(monkeypatch, tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv("X_PW_FILE", str(tmp_path / "pw"))
    assert env_str("X_PW", "") == "s3cret"


def test_it_says_which_secret_file_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("X_PW_FILE", str(tmp_path / "nope"))
    with pytest.raises(ImproperlyConfigured, match="X_PW_FILE="):
        env_str("X_PW", "")


def test_it_generates_a_secret_key_once_and_keeps_it(monkeypatch, tmp_path):
    monkeypatch.delenv("X_KEY", raising=False)
    first = secret_key("X_KEY", tmp_path)
    assert len(first) >= 50
    assert secret_key("X_KEY", tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
