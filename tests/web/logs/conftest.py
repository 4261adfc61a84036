"""A real agent process for the follower's tests (the busybox image is
tests/web/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.agent_harness import AgentProcess
from tests.support.registry import TestRegistry
from tests.web.logs.support import running_agent


@pytest.fixture
def agent(registry: TestRegistry) -> Iterator[AgentProcess]:
    """A real agent holding the registry's credentials, removed after."""
    with running_agent(registry, "pl-") as proc:
        yield proc
