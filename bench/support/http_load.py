"""A bounded HTTP load client that behaves like a browser, for measuring
"zero failed requests" through a router that reloads.

Each worker thread keeps one keep-alive connection and sends GETs on it
back to back. When nginx reloads, an old worker closes its idle keep-alive
connections; a request sent on one just then gets no response byte at all
(EOF or RST). Browsers (and urllib3) retry such a request once on a fresh
connection, because the server cannot have processed it... or, for an
idempotent request, because processing it twice is harmless. So do we, and
only then: a request is retried when it is idempotent, went out on a reused
connection and got not one byte back. Everything else counts as failed: a
timeout, a connection that breaks mid-response, a refused fresh connection,
a status outside ``ok_statuses``. The retries are counted and reported.

Bounded: it stops after ``duration_s`` or ``max_requests``, whichever comes
first. Plain HTTP/1.1 over TCP with Content-Length or chunked bodies.

    result = run_load(host="127.0.0.1", port=8080, host_header="hello.localhost",
                      workers=4, duration_s=5)
    assert result.failed == 0, result.errors
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MAX_HEAD = 64 * 1024
MAX_ERRORS_KEPT = 20


class NoResponse(Exception):
    """The connection ended before a single response byte arrived."""


class BrokenResponse(Exception):
    """The response started but did not complete, or was not HTTP."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.received = 0  # bytes of this response so far

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.received += len(chunk)
        self.buf += chunk

    def until(self, marker: bytes, limit: int = MAX_HEAD) -> bytes:
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise BrokenResponse("response head too large")
            self._fill()
        head, _, self.buf = self.buf.partition(marker)
        return head

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class Connection:
    """One keep-alive connection; reconnects lazily after a close."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.sock: socket.socket | None = None
        self.served = 0  # responses read on the current socket

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.served = None, 0

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.served = sock, 0
        return sock

    @property
    def reused(self) -> bool:
        return self.sock is not None and self.served > 0

    def request(self, method: str, path: str, headers: Mapping[str, str]) -> Response:
        """Send one request and read its response. Raises NoResponse when
        not one byte came back, BrokenResponse or OSError otherwise."""
        sock = self.sock or self._connect()
        lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        reader = _Reader(sock)
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            response = self._read(reader, method)
        except (EOFError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            self.close()
            if reader.received == 0:
                raise NoResponse(repr(exc)) from exc
            raise BrokenResponse(f"connection ended mid-response: {exc!r}") from exc
        except BaseException:
            self.close()
            raise
        self.served += 1
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def _read(self, reader: _Reader, method: str) -> Response:
        head = reader.until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise BrokenResponse(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Response(status, headers, b"")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return Response(status, headers, self._chunked(reader))
        if "content-length" in headers:
            return Response(status, headers, reader.exactly(int(headers["content-length"])))
        raise BrokenResponse("response without a length on a keep-alive connection")

    @staticmethod
    def _chunked(reader: _Reader) -> bytes:
        body = b""
        while True:
            size = int(reader.until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                reader.until(b"\r\n")  # no trailers expected
                return body
            body += reader.exactly(size)
            reader.exactly(2)


@dataclass
class LoadResult:
    requests: int = 0
    ok: int = 0
    failed: int = 0
    retries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    # (time.monotonic() when the failed request was sent, what went wrong),
    # so a caller can tell failures at a fault it caused from any others.
    failures: list[tuple[float, str]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add(self, other: LoadResult) -> None:
        self.requests += other.requests
        self.ok += other.ok
        self.failed += other.failed
        self.retries += other.retries
        self.statuses.update(other.statuses)
        self.errors.extend(other.errors[: MAX_ERRORS_KEPT - len(self.errors)])
        self.failures.extend(other.failures[: MAX_ERRORS_KEPT - len(self.failures)])
        self.latencies_s.extend(other.latencies_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "retries": self.retries,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors[:MAX_ERRORS_KEPT],
            "elapsed_s": round(self.elapsed_s, 3),
        }


def fetch(
    conn: Connection, method: str, path: str, headers: Mapping[str, str]
) -> tuple[Response, int]:
    """One request as a browser sends it: ``(response, retries)``."""
    reused = conn.reused
    try:
        return conn.request(method, path, headers), 0
    except NoResponse:
        if not (reused and method in IDEMPOTENT):
            raise
    return conn.request(method, path, headers), 1  # on a fresh connection


def _worker(
    *,
    host: str,
    port: int,
    headers: Mapping[str, str],
    path: str,
    ok_statuses: Collection[int],
    should_stop: Callable[[], bool],
    timeout_s: float,
    on_response: Callable[[Response], None] | None,
) -> LoadResult:
    result = LoadResult()
    conn = Connection(host, port, timeout_s=timeout_s)
    try:
        while not should_stop():
            started, sent_at = time.perf_counter(), time.monotonic()
            result.requests += 1
            try:
                response, retries = fetch(conn, "GET", path, headers)
            except (OSError, NoResponse, BrokenResponse, ValueError) as exc:
                result.failed += 1
                if len(result.errors) < MAX_ERRORS_KEPT:
                    result.errors.append(repr(exc))
                    result.failures.append((sent_at, repr(exc)))
                continue
            result.latencies_s.append(time.perf_counter() - started)
            result.retries += retries
            result.statuses[response.status] += 1
            if response.status in ok_statuses:
                result.ok += 1
            else:
                result.failed += 1
                if len(result.failures) < MAX_ERRORS_KEPT:
                    result.failures.append((sent_at, f"status {response.status}"))
            if on_response is not None:
                on_response(response)
    finally:
        conn.close()
    return result


def run_load(
    *,
    host: str,
    port: int,
    host_header: str,
    path: str = "/",
    workers: int = 4,
    duration_s: float = 5.0,
    max_requests: int | None = None,
    ok_statuses: Collection[int] = (200,),
    stop: threading.Event | None = None,
    timeout_s: float = 10.0,
    on_response: Callable[[Response], None] | None = None,
) -> LoadResult:
    """Run ``workers`` keep-alive clients until ``duration_s`` has passed,
    ``max_requests`` were sent or ``stop`` is set; return the sum."""
    headers = {"Host": host_header, "User-Agent": "paas-http-load", "Accept": "*/*"}
    deadline = time.monotonic() + duration_s
    sent = 0
    lock = threading.Lock()

    def should_stop() -> bool:
        nonlocal sent
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return True
        with lock:
            if max_requests is not None and sent >= max_requests:
                return True
            sent += 1
        return False

    results: list[LoadResult] = []
    started = time.monotonic()

    def target() -> None:
        outcome = _worker(
            host=host,
            port=port,
            headers=headers,
            path=path,
            ok_statuses=ok_statuses,
            should_stop=should_stop,
            timeout_s=timeout_s,
            on_response=on_response,
        )
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=target, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = LoadResult()
    for outcome in results:
        total.add(outcome)
    total.elapsed_s = time.monotonic() - started
    return total
