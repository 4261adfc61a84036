"""A bounded keep-alive HTTP client that behaves like a browser: it reuses
connections, and retries a GET once on a fresh connection only when a reused
connection closed before any response byte (nginx closes idle keep-alive
connections on reload). Stand-in for the router helper's http_load.py."""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field


@dataclass
class LoadReport:
    ok: int = 0
    failed: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    bodies: dict[str, int] = field(default_factory=dict)


class KeepAliveLoad:
    def __init__(self, port: int, host_header: str, *, workers: int = 2) -> None:
        self.port = port
        self.host_header = host_header
        self.workers = workers
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _get(self, conn: http.client.HTTPConnection) -> tuple[int, bytes]:
        conn.request("GET", "/", headers={"Host": self.host_header})
        response = conn.getresponse()
        return response.status, response.read()

    def _one(self, conn: http.client.HTTPConnection, reused: bool) -> tuple[int, bytes]:
        try:
            return self._get(conn)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            with self._lock:
                self.report.retries += 1
            conn.close()
            return self._get(conn)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        reused = False
        while not self._stop.is_set():
            try:
                status, body = self._one(conn, reused)
                reused = True
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, repr(exc).encode()
                conn.close()
                reused = False
            with self._lock:
                if status == 200:
                    self.report.ok += 1
                    text = body.decode(errors="replace").strip()
                    self.report.bodies[text] = self.report.bodies.get(text, 0) + 1
                else:
                    self.report.failed += 1
                    self.report.errors.append(f"{status}: {body[:200]!r}")
        conn.close()

    def __enter__(self) -> KeepAliveLoad:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
