"""Where the router's nginx keeps its files, and the settings it runs with.

Everything lives under ``PAAS_ROUTER_DIR`` (``$PAAS_DATA_DIR/router``), never
in /etc/nginx: the platform runs its own nginx master next to any system one.

    live -> generations/000042     the config nginx runs (-c live/nginx.conf)
    generations/000042/            nginx.conf, routes.json, certs/ (0700)
    run/nginx.pid  run/status.sock the master's pid; a unix socket answering
                                   GET /generation with the generation served
    logs/access.log logs/error.log JSON lines, one per request; nginx's errors
    lock                           one apply at a time (flock)

A new config is written as the next generation, tested with ``nginx -t``,
then ``live`` is swapped to it with one rename and nginx is told to reload,
so a config that nginx refuses never becomes ``live``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from runtime_agent.host.private import private_dir

GENERATION_DIGITS = 6


@dataclass(frozen=True)
class RouterConfig:
    directory: Path
    http_port: int
    https_port: int
    listen: tuple[str, ...]
    nginx: str
    workers: int  # 0: one per CPU
    max_body_mb: int
    read_timeout: int
    reload_timeout: float

    @classmethod
    def from_settings(cls) -> RouterConfig:
        return cls(
            directory=Path(settings.PAAS_ROUTER_DIR),
            http_port=settings.PAAS_ROUTER_PORT,
            https_port=settings.PAAS_ROUTER_HTTPS_PORT,
            listen=tuple(settings.PAAS_ROUTER_LISTEN),
            nginx=settings.PAAS_ROUTER_NGINX,
            workers=settings.PAAS_ROUTER_WORKERS,
            max_body_mb=settings.PAAS_ROUTER_MAX_BODY_MB,
            read_timeout=settings.PAAS_ROUTER_READ_TIMEOUT,
            reload_timeout=settings.PAAS_ROUTER_RELOAD_TIMEOUT,
        )

    @property
    def live(self) -> Path:
        return self.directory / "live"

    @property
    def live_conf(self) -> Path:
        return self.live / "nginx.conf"

    @property
    def generations(self) -> Path:
        return self.directory / "generations"

    def generation_dir(self, generation: int) -> Path:
        return self.generations / f"{generation:0{GENERATION_DIGITS}d}"

    @property
    def run_dir(self) -> Path:
        return self.directory / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "nginx.pid"

    @property
    def status_socket(self) -> Path:
        return self.run_dir / "status.sock"

    @property
    def logs_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def access_log(self) -> Path:
        return self.logs_dir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.logs_dir / "error.log"

    @property
    def lock_file(self) -> Path:
        return self.directory / "lock"

    def make_dirs(self) -> None:
        # Root's alone (nginx's workers open nothing here): the logs name
        # clients and hosts, and the status socket answers whoever connects.
        private_dir(self.directory)
        for path in (self.directory, self.generations, self.run_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
