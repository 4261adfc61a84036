"""A real agent process and the tiny busybox image, as for the log tests."""

from tests.web.logs.conftest import agent, busybox_image

__all__ = ["agent", "busybox_image"]
