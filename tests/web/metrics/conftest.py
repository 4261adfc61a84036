"""A real agent process, as for the log tests (the busybox image is
tests/web/conftest.py's)."""

from tests.web.logs.conftest import agent

__all__ = ["agent"]
