"""The build steps' trust and proxy settings as a deployment sets them: a
fresh process per case (settings are read at start)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.web.conftest import ROOT

PRINT = (
    "from django.conf import settings as s; from paas.builds.engine_adapter import engine_config;"
    "t = engine_config().trust; print(s.PAAS_BUILD_CA_BUNDLE, t.ca_bundle, t.http_proxy,"
    " t.https_proxy, t.no_proxy, sep='|')"
)


def _shell(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", PRINT],
        cwd=ROOT, env={**base, "PAAS_DATA_DIR": str(tmp_path), **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_steps_get_the_hosts_bundle_and_proxies_by_default(tmp_path):
    result = _shell(
        tmp_path, HTTP_PROXY="http://proxy.internal:3128", https_proxy="http://p:3129",
        NO_PROXY="localhost,.internal",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    assert result.stdout.strip() == (
        f"{bundle}|{bundle}|http://proxy.internal:3128|http://p:3129|localhost,.internal"
    )


def test_the_settings_override_the_host(tmp_path):
    bundle = tmp_path / "corp.pem"
    bundle.write_text("x")
    result = _shell(
        tmp_path, HTTP_PROXY="http://host-proxy:1", PAAS_BUILD_HTTP_PROXY="http://build-proxy:2",
        PAAS_BUILD_CA_BUNDLE=str(bundle),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{bundle}|{bundle}|http://build-proxy:2||"
    none = _shell(
        tmp_path, PAAS_BUILD_CA_BUNDLE="none", HTTPS_PROXY="http://host-proxy:1",
        PAAS_BUILD_HTTPS_PROXY="none", NO_PROXY=".internal", PAAS_BUILD_NO_PROXY="NONE",
    )  # fmt: skip
    assert none.returncode == 0, none.stderr
    assert none.stdout.strip() == "|None|||"


def test_a_missing_bundle_stops_the_process_naming_the_variable(tmp_path):
    result = _shell(tmp_path, PAAS_BUILD_CA_BUNDLE=str(tmp_path / "missing.pem"))
    assert result.returncode != 0
    assert "PAAS_BUILD_CA_BUNDLE=" in result.stderr and "is not a file" in result.stderr
