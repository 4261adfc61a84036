"""The control plane's side of the settings helper (whose rules are tested in
tests/agent/test_settings.py): Django's error, the names and networks it
checks, and the secret key it keeps."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from paas.env import env_file, env_int, env_name, env_path, env_subnet, secret_key
from runtime_agent.net.names import IFNAME_RE, IFNAME_RULE


def test_a_bad_value_is_improperly_configured_naming_the_variable(monkeypatch):
    monkeypatch.setenv("X_NUM", "12a")
    with pytest.raises(ImproperlyConfigured, match="X_NUM='12a' is not a whole number"):
        env_int("X_NUM", 1)


def test_a_relative_path_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("X_DIR", "var")
    with pytest.raises(ImproperlyConfigured, match="X_DIR must be an absolute path"):
        env_path("X_DIR", tmp_path)


def test_a_bridge_name_follows_the_network_codes_rule(monkeypatch):
    monkeypatch.setenv("X_BRIDGE", "a-bridge-name-too-long")
    with pytest.raises(ImproperlyConfigured, match="X_BRIDGE must be 1-15 ASCII letters"):
        env_name("X_BRIDGE", "paasbuild0", IFNAME_RE, IFNAME_RULE)
    monkeypatch.setenv("X_BRIDGE", "")
    assert env_name("X_BRIDGE", "paasbuild0", IFNAME_RE, IFNAME_RULE) == "paasbuild0"


def test_a_subnet_is_checked_and_kept_as_text(monkeypatch):
    monkeypatch.setenv("X_NET", "10.89.1.0/24")
    assert env_subnet("X_NET", "10.89.0.0/24") == "10.89.1.0/24"
    monkeypatch.setenv("X_NET", "10.89.1.7/24")
    with pytest.raises(ImproperlyConfigured, match="X_NET must be an IPv4 network"):
        env_subnet("X_NET", "10.89.0.0/24")


def test_it_generates_a_secret_key_once_and_keeps_it(monkeypatch, tmp_path):
    monkeypatch.delenv("X_KEY", raising=False)
    first = secret_key("X_KEY", tmp_path)
    assert len(first) >= 50
    assert secret_key("X_KEY", tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_a_secret_key_may_come_from_a_file(monkeypatch, tmp_path):
    (tmp_path / "key").write_text("k" * 60 + "\n")
    monkeypatch.setenv("X_KEY_FILE", str(tmp_path / "key"))
    assert secret_key("X_KEY", tmp_path / "data") == "k" * 60


def test_a_file_setting_wants_an_existing_file_by_absolute_path(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    monkeypatch.setenv("X_CA", str(bundle))
    assert env_file("X_CA", "", none_word="none") == str(bundle)
    monkeypatch.setenv("X_CA", "ca.pem")
    with pytest.raises(ImproperlyConfigured, match="X_CA must be an absolute path, got 'ca.pem'"):
        env_file("X_CA", "")
    monkeypatch.setenv("X_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(ImproperlyConfigured, match="X_CA=.*missing.pem' is not a file"):
        env_file("X_CA", "")


def test_a_file_setting_may_name_no_file(monkeypatch, tmp_path):
    monkeypatch.setenv("X_CA", "None")
    assert env_file("X_CA", str(tmp_path), none_word="none") == ""
    monkeypatch.setenv("X_CA", "")
    assert env_file("X_CA", "") == ""
