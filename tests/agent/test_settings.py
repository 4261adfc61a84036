"""The one settings helper both processes read the environment through:
NAME or NAME_FILE, empty means unset, absolute paths, finite numbers, and a
bad value names its variable."""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from runtime_agent.host.settings import SettingError, Settings


def read(**env: str) -> Settings:
    return Settings(env, prefix="X_")


def test_it_uses_the_default_when_a_variable_is_unset_or_empty():
    for settings in (read(), read(X_A="", X_A_FILE="")):
        assert settings.text("A", "d") == "d"
        assert settings.optional("A") is None
        assert settings.flag("A", True) is True
        assert settings.integer("A", 7) == 7
        assert settings.number("A", 0.5) == 0.5
        assert settings.path("A", Path("/srv")) == Path("/srv")
        assert settings.items("A", ["a"]) == ["a"]


def test_it_reads_a_value_from_a_file_without_its_newline(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    assert read(X_PW_FILE=str(tmp_path / "pw")).text("PW", "") == "s3cret"


def test_every_kind_of_value_may_come_from_a_file(tmp_path):
    (tmp_path / "n").write_text("42\n")
    (tmp_path / "hosts").write_text("a.example,b.example\n")
    settings = read(X_N_FILE=str(tmp_path / "n"), X_H_FILE=str(tmp_path / "hosts"))
    assert settings.integer("N", 1) == 42
    assert settings.items("H", []) == ["a.example", "b.example"]


def test_setting_a_variable_and_its_file_is_an_error(tmp_path):
    (tmp_path / "pw").write_text("s3cret")
    with pytest.raises(SettingError, match="set X_PW or X_PW_FILE, not both"):
        read(X_PW="other", X_PW_FILE=str(tmp_path / "pw")).text("PW", "")


@pytest.mark.parametrize(
    ("file_value", "says"),
    [
        ("relative/pw", r"X_PW_FILE must be an absolute path, got 'relative/pw'"),
        ("/nonexistent/pw", r"X_PW_FILE: cannot read /nonexistent/pw"),
    ],
)
def test_a_file_that_cannot_be_read_names_the_variable(file_value, says):
    with pytest.raises(SettingError, match=says):
        read(X_PW_FILE=file_value).text("PW", "")


def test_an_empty_file_is_an_error_not_a_default(tmp_path):
    (tmp_path / "pw").write_text("\n")
    with pytest.raises(SettingError, match="X_PW_FILE: .* is empty"):
        read(X_PW_FILE=str(tmp_path / "pw")).text("PW", "")


def test_it_reads_booleans_in_the_usual_spellings():
    for raw, expected in [("1", True), ("true", True), ("On", True), ("0", False), ("no", False)]:
        assert read(X_F=raw).flag("F", not expected) is expected


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda s: s.flag("V", False), r"X_V='maybe' is not a boolean"),
        (lambda s: s.integer("V", 1), r"X_V='maybe' is not a whole number"),
        (lambda s: s.number("V", 1.0), r"X_V='maybe' is not a number"),
    ],
)
def test_a_value_of_the_wrong_kind_names_the_variable(call, says):
    with pytest.raises(SettingError, match=says):
        call(read(X_V="maybe"))


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e999"])
def test_numbers_must_be_finite(raw):
    with pytest.raises(SettingError, match=f"X_V={raw!r} is not a finite number"):
        read(X_V=raw).number("V", 1.0)


def test_it_enforces_bounds():
    with pytest.raises(SettingError, match="X_N=3 is below the minimum of 5"):
        read(X_N="3").integer("N", 10, minimum=5)
    with pytest.raises(SettingError, match="X_N=2.5 is above the maximum of 1"):
        read(X_N="2.5").number("N", 0.5, maximum=1)
    assert read(X_N="5").integer("N", 10, minimum=5) == 5


@pytest.mark.parametrize("raw", ["relative/dir", "./var", "~/var"])
def test_paths_must_be_absolute(raw):
    with pytest.raises(SettingError, match=f"X_P must be an absolute path, got {raw!r}"):
        read(X_P=raw).path("P", Path("/srv"))


def test_it_splits_lists_and_drops_blanks():
    assert read(X_L="a.example, b.example,,").items("L", []) == ["a.example", "b.example"]


def test_a_name_must_match_all_of_its_pattern():
    pattern = re.compile(r"[a-z]{1,3}")
    assert read(X_N="abc").matching("N", "x", pattern, "1-3 letters") == "abc"
    with pytest.raises(SettingError, match=r"X_N must be 1-3 letters, got 'abc\\nx'"):
        read(X_N="abc\nx").matching("N", "x", pattern, "1-3 letters")


def test_it_reads_listen_addresses_and_subnets():
    settings = read(X_L="[::1]:8123", X_S="10.77.3.0/24")
    assert settings.listen("L", "127.0.0.1:1") == ("::1", 8123)
    assert settings.subnet("S", "10.0.0.0/16") == IPv4Network("10.77.3.0/24")
    for bad in ("7070", "127.0.0.1:99999", "127.0.0.1:"):
        with pytest.raises(SettingError, match="X_L must be host:port"):
            read(X_L=bad).listen("L", "127.0.0.1:1")
    for bad, says in [("10.0.0.1/16", "IPv4 network"), ("10.0.0.0/30", "too small")]:
        with pytest.raises(SettingError, match=says):
            read(X_S=bad).subnet("S", "10.0.0.0/16")


def test_a_log_level_is_one_of_the_five_in_any_case():
    assert read().log_level("LOG") == "INFO"
    assert read(X_LOG="debug").log_level("LOG") == "DEBUG"
    with pytest.raises(SettingError, match="X_LOG must be one of DEBUG, INFO"):
        read(X_LOG="loud").log_level("LOG")
