"""The load client (bench/support/http_load.py, shared by the benchmarks and
the zero-downtime tests) retries like a browser and no more: only an idempotent
request, sent on a reused connection, that got not one response byte."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bench.support.http_load import (
    BrokenResponse,
    Connection,
    NoResponse,
    fetch,
    run_load,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

# Each script gets the accepted socket and the connection's index.
Script = Callable[[socket.socket, int], None]


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


@contextlib.contextmanager
def _server(script: Script) -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        index = 0
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                script(conn, index)
            index += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(timeout=10)


def _closes_after_one(conn: socket.socket, index: int) -> None:
    """Answers one request, then reads the next and closes silently, like an
    old nginx worker closing an idle keep-alive connection on reload."""
    if _read_request(conn):
        conn.sendall(OK)
    _read_request(conn)


def test_a_get_on_a_reused_connection_closed_silently_is_retried_once() -> None:
    with _server(_closes_after_one) as port:
        conn = Connection("127.0.0.1", port, timeout_s=5)
        first, retries = fetch(conn, "GET", "/", {"Host": "a.localhost"})
        assert (first.status, retries) == (200, 0)
        second, retries = fetch(conn, "GET", "/", {"Host": "a.localhost"})
        assert (second.status, second.body, retries) == (200, b"ok", 1)
        conn.close()


def test_a_post_is_never_retried() -> None:
    with _server(_closes_after_one) as port:
        conn = Connection("127.0.0.1", port, timeout_s=5)
        fetch(conn, "GET", "/", {"Host": "a.localhost"})
        with pytest.raises(NoResponse):
            fetch(conn, "POST", "/", {"Host": "a.localhost", "Content-Length": "0"})


def test_a_fresh_connection_closed_silently_fails() -> None:
    def close_at_once(conn: socket.socket, index: int) -> None:
        _read_request(conn)

    with _server(close_at_once) as port, pytest.raises(NoResponse):
        fetch(Connection("127.0.0.1", port, timeout_s=5), "GET", "/", {"Host": "a.localhost"})


def test_a_response_cut_short_fails_without_a_retry() -> None:
    def cut_short(conn: socket.socket, index: int) -> None:
        if _read_request(conn):
            conn.sendall(OK)
        if _read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    with _server(cut_short) as port:
        conn = Connection("127.0.0.1", port, timeout_s=5)
        fetch(conn, "GET", "/", {"Host": "a.localhost"})
        with pytest.raises(BrokenResponse):
            fetch(conn, "GET", "/", {"Host": "a.localhost"})


def test_run_load_counts_requests_failures_and_retries() -> None:
    with _server(_closes_after_one) as port:
        result = run_load(
            host="127.0.0.1", port=port, host_header="a.localhost", workers=1, max_requests=6
        )
    assert (result.requests, result.ok, result.failed) == (6, 6, 0)
    assert result.retries == 5  # every request after the first on each connection
    assert result.statuses == {200: 6}


def test_each_failure_is_kept_with_when_its_request_was_sent() -> None:
    def cut_then_refuse(conn: socket.socket, index: int) -> None:
        if _read_request(conn):  # every connection: a response cut short
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    before = time.monotonic()
    with _server(cut_then_refuse) as port:
        result = run_load(
            host="127.0.0.1", port=port, host_header="a.localhost", workers=1, max_requests=3
        )
    after = time.monotonic()
    assert (result.requests, result.failed) == (3, 3)
    assert [error for _, error in result.failures] == [
        "BrokenResponse('connection ended mid-response: EOFError()')"
    ] * 3
    sent = [at for at, _ in result.failures]
    assert sent == sorted(sent) and before <= sent[0] and sent[-1] <= after


def test_a_status_outside_the_accepted_ones_is_a_failure_kept_too() -> None:
    def unavailable(conn: socket.socket, index: int) -> None:
        if _read_request(conn):
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")

    with _server(unavailable) as port:
        result = run_load(
            host="127.0.0.1", port=port, host_header="a.localhost", workers=1, max_requests=1
        )
    assert [error for _, error in result.failures] == ["status 503"]
