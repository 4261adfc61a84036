"""Fixtures for the router: a real nginx on free loopback ports and real
HTTP backends, all stopped and removed with the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backends import Backend, run_backends
from tests.support.router import TestRouter, run_router


@pytest.fixture
def router(tmp_path: Path) -> Iterator[TestRouter]:
    with run_router(tmp_path / "router") as running:
        yield running


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    with run_backends("one", "two", "three") as running:
        yield running
