"""The settings as a deployment sees them: a fresh process per case."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.web.conftest import ROOT


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_mode_over_https_passes_the_deploy_checks(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        PAAS_MODE="production",
        PAAS_PANEL_URL="https://paas.example.com",
        SECRET_KEY=secrets.token_urlsafe(60),
        PAAS_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


# What a fresh process makes of its settings, and how it answers a plain-HTTP
# GET of the login page on the default address (as a browser would send it).
_PROBE = """
import json
from django.conf import settings as s
from django.test import Client
r = Client().get("/login/", HTTP_HOST="127.0.0.1:8000")
print(json.dumps({
    "debug": s.DEBUG,
    "secure_cookies": [s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE],
    "hsts": s.SECURE_HSTS_SECONDS,
    "ssl_redirect": s.SECURE_SSL_REDIRECT,
    "login": [r.status_code, r.get("Location", "")],
}))
"""


def _probe(tmp_path, **env):
    result = _manage("shell", "-c", _PROBE, PAAS_DATA_DIR=str(tmp_path), **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_over_plain_http_has_no_debug_and_no_https_only_settings(tmp_path):
    seen = _probe(tmp_path, PAAS_MODE="production", PAAS_PANEL_URL="http://127.0.0.1:8000")
    assert seen == {
        "debug": False,
        "secure_cookies": [False, False],
        "hsts": 0,
        "ssl_redirect": False,
        "login": [200, ""],
    }


def test_a_panel_served_over_https_gets_secure_cookies_hsts_and_the_redirect(tmp_path):
    seen = _probe(
        tmp_path,
        PAAS_MODE="production",
        PAAS_PANEL_URL="https://paas.example.com",
        ALLOWED_HOSTS="127.0.0.1",
    )
    assert seen["secure_cookies"] == [True, True]
    assert seen["hsts"] == 31536000
    assert seen["ssl_redirect"] is True
    assert seen["login"] == [301, "https://127.0.0.1:8000/login/"]


def test_development_mode_shows_tracebacks(tmp_path):
    assert _probe(tmp_path, PAAS_MODE="development")["debug"] is True


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://paas.example.com", "https://"])
def test_a_panel_url_that_is_not_one_stops_the_process(tmp_path, url):
    result = _manage("check", PAAS_PANEL_URL=url, PAAS_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert f"PAAS_PANEL_URL={url!r}" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PAAS_MAX_UPLOAD_BYTES", "lots", "PAAS_MAX_UPLOAD_BYTES='lots' is not a whole number"),
        ("PAAS_BUILD_CPUS", "nan", "PAAS_BUILD_CPUS='nan' is not a finite number"),
        ("PAAS_UPLOAD_DIR", "var/up", "PAAS_UPLOAD_DIR must be an absolute path"),
        ("PAAS_BUILD_BRIDGE", "bad bridge", "PAAS_BUILD_BRIDGE must be 1-15 ASCII letters"),
        ("SECRET_KEY_FILE", "/nonexistent/key", "SECRET_KEY_FILE: cannot read"),
    ],
)
def test_a_bad_setting_stops_the_process_with_its_name(tmp_path, name, value, says):
    result = _manage("check", **{name: value}, PAAS_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert says in result.stderr


def test_a_setting_and_its_file_together_stop_the_process(tmp_path):
    (tmp_path / "url").write_text("redis://127.0.0.1:1/0\n")
    result = _manage(
        "check",
        REDIS_URL="redis://127.0.0.1:2/0",
        REDIS_URL_FILE=str(tmp_path / "url"),
        PAAS_DATA_DIR=str(tmp_path),
    )
    assert result.returncode != 0
    assert "set REDIS_URL or REDIS_URL_FILE, not both" in result.stderr


def test_an_unknown_mode_is_refused(tmp_path):
    result = _manage("check", PAAS_MODE="staging", PAAS_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "PAAS_MODE='staging'" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_the_first_admin_password_is_printed_once(tmp_path):
    from django.core.management import call_command

    first, second = tmp_path / "1", tmp_path / "2"
    with open(first, "w") as out:
        call_command("ensure_admin", stdout=out)
    with open(second, "w") as out:
        call_command("ensure_admin", stdout=out)
    assert "with password: " in first.read_text()
    assert "exists already" in second.read_text()
    assert "password" not in second.read_text()


@pytest.mark.django_db(transaction=True)
def test_the_first_admin_password_may_come_from_a_file(tmp_path, monkeypatch):
    from django.contrib.auth import authenticate
    from django.core.management import call_command

    (tmp_path / "pw").write_text("alice-admin-pw-123\n")
    monkeypatch.setenv("PAAS_ADMIN_USER", "alice")
    monkeypatch.setenv("PAAS_ADMIN_PASSWORD_FILE", str(tmp_path / "pw"))
    with open(tmp_path / "out", "w") as out:
        call_command("ensure_admin", stdout=out)
    assert "with PAAS_ADMIN_PASSWORD" in (tmp_path / "out").read_text()
    assert authenticate(username="alice", password="alice-admin-pw-123") is not None
