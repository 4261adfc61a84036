"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import uuid

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    # The tests run the real thing: runc, namespaces, mounts, nftables.
    if os.geteuid() != 0:
        pytest.exit("run the tests as root (scripts/test does): they use runc and namespaces", 2)


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id for names unique to this test run (other runs share the host)."""
    return uuid.uuid4().hex[:6]
