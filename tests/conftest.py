"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id for names unique to this test run (other runs share the host)."""
    return uuid.uuid4().hex[:6]


def is_root() -> bool:
    return os.geteuid() == 0


def have(binary: str) -> bool:
    return subprocess.run(["which", binary], capture_output=True, check=False).returncode == 0
