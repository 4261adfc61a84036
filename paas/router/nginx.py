"""The one wrapper for the ``nginx`` command: every nginx run goes through
here and through ``runtime_agent.host.cmd.run`` (argv lists, logged, raising).

nginx always gets ``-p`` (our prefix), ``-e`` (our error log: otherwise it
first tries /var/log/nginx) and ``-c``, so it never reads the system's
/etc/nginx config.
"""

from __future__ import annotations

import re
from pathlib import Path

from paas.router.config import RouterConfig
from paas.router.errors import RouterConfigRejected
from runtime_agent.host.cmd import run
from runtime_agent.host.errors import CommandFailed

TEST_TIMEOUT_S = 60


class Nginx:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config

    def _argv(self, conf: Path, *extra: str) -> list[str]:
        return [
            self.config.nginx,
            "-p", f"{self.config.directory}/",
            "-e", str(self.config.error_log),
            "-c", str(conf),
            *extra,
        ]  # fmt: skip

    def test(self, conf: Path) -> None:
        """``nginx -t`` on ``conf``; :class:`RouterConfigRejected` with
        nginx's own words if it refuses it."""
        try:
            run(self._argv(conf, "-t", "-q"), timeout=TEST_TIMEOUT_S, failure_expected=True)
        except CommandFailed as exc:
            raise RouterConfigRejected(
                f"nginx refused the new router config: {_nginx_message(exc.stderr)}",
                config=str(conf),
            ) from exc

    def serve_argv(self, conf: Path) -> list[str]:
        """The argv that runs the master in the foreground (the config says
        ``daemon off``): for scripts/up's supervisor, and for the tests' router."""
        return self._argv(conf)

    def version(self) -> str:
        proc = run([self.config.nginx, "-v"], timeout=TEST_TIMEOUT_S)
        return proc.stderr.decode(errors="replace").strip()


def _nginx_message(stderr: str) -> str:
    """The lines that say what is wrong, without the "test failed" trailer."""
    lines = [
        re.sub(r"^nginx: ", "", line).strip()
        for line in stderr.splitlines()
        if line.strip() and "test failed" not in line
    ]
    return "; ".join(lines)[-2000:] or "no message (see the router's error log)"
