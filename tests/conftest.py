"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import uuid

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    # The tests run the real thing: runc, namespaces, mounts, nftables.
    if os.geteuid() != 0:
        pytest.exit("run the tests as root (scripts/test does): they use runc and namespaces", 2)


def _on_postgres() -> bool:
    from django.conf import settings

    return "postgresql" in settings.DATABASES["default"]["ENGINE"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``postgres_only`` tests are deselected (not skipped: the summary counts
    them) on another database, unless PAAS_TEST_POSTGRES=1 says this run is
    scripts/test's PostgreSQL pass: then they run, and fail if it is not."""
    if _on_postgres() or os.environ.get("PAAS_TEST_POSTGRES") == "1":
        return
    left_out = [item for item in items if item.get_closest_marker("postgres_only")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("postgres_only")]
        config.stash[_LEFT_OUT] = len(left_out)


_LEFT_OUT = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    left_out = terminalreporter.config.stash.get(_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"{left_out} postgres_only test(s) deselected on this database: "
            "scripts/test's PostgreSQL pass runs them"
        )


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id for names unique to this test run (other runs share the host)."""
    return uuid.uuid4().hex[:6]
