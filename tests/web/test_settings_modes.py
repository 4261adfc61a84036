"""The settings as a deployment sees them: a fresh process per case."""

from __future__ import annotations

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


def test_production_mode_passes_the_deploy_checks(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        PAAS_MODE="production",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="paas.example.com",
        PAAS_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_a_bad_setting_stops_the_process_with_its_name(tmp_path):
    result = _manage("check", PAAS_MAX_UPLOAD_BYTES="lots", PAAS_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "PAAS_MAX_UPLOAD_BYTES='lots' is not a whole number" in result.stderr


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
