"""Bad router settings stop the process at start, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PAAS_ROUTER_LISTEN", "127.0.0.1,evil;"),
        ("PAAS_ROUTER_PORT", "70000"),
        ("PAAS_ROUTER_HTTPS_PORT", "0"),
        ("PAAS_ROUTER_WORKERS", "many"),
    ],
)
def test_a_bad_router_setting_is_refused(tmp_path: Path, name: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "PAAS_DATA_DIR": str(tmp_path), name: value},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert name in result.stderr
