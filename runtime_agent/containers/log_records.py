"""NDJSON log records: how the agent stores a container's lines, reads them
back and hands them to followers.

A record is one compact JSON object and a newline,
``{"time":...,"stream":...,"line":...,"n":N}`` (:func:`line_json`), made
once per line: log.jsonl stores it and a follow stream sends the same bytes
(encoding each line twice, for the file and for the stream, through
json.dumps of a dict, was a fifth of the agent's CPU under a flood).
Followers queue records, strings, never an object per line: a follower far
behind a flood holds up to FOLLOW_QUEUE_MAX of them, and objects made the
collector's full passes stop the event loop for 100-170 ms. History for a
follow is read as stored, without parsing (:func:`stored_record`), a block
at a time (log_history.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import json.encoder
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runtime_agent import wire

if TYPE_CHECKING:
    from runtime_agent.containers.log_history import StoredHistory

# json's own string escaper (C), ASCII-only like json.dumps' default.
json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii

# A follower this many lines behind is cut off rather than buffered forever
# (it reconnects with ``since``); one poll can bring ~17k short lines (1 MiB).
FOLLOW_QUEUE_MAX = 100_000


def rfc3339(ts: float) -> str:
    """``2026-11-30T08:42:59.123456Z``: fixed width, so strings sort like times."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """An RFC 3339 time (``Z`` or an offset) as epoch seconds."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.timestamp()


def line_json(line: wire.LogLine) -> str:
    """A stored line as its NDJSON record, exactly as log.jsonl holds it and
    a follow stream sends it: encoded once per line, not once per use.

    Compact, ASCII-only JSON built by hand around the C string escaper:
    json.dumps of a dict per line was a fifth of the agent's CPU under a
    flood, and it ran twice (the file, then the follow stream).
    """
    return (
        f'{{"time":{json_string(line.time)},"stream":{json_string(line.stream)},'
        f'"line":{json_string(line.line)},"n":{line.n}}}\n'
    )


class LogFollow:
    """One follower's lines: what the tailer stored that it has not taken yet.

    The tailer appends each stored batch's NDJSON records (:func:`line_json`,
    the bytes of log.jsonl) and wakes the waiter in the same step
    (:meth:`push`); :meth:`chunk` hands over everything that piled up as it
    is sent, :meth:`batch` the same parsed into lines. Only strings wait
    here: a follower far behind a flood holds up to FOLLOW_QUEUE_MAX of them,
    and objects would be what the collector walks.
    """

    def __init__(self, history: StoredHistory, followers: set[LogFollow]) -> None:
        self._history: StoredHistory | None = history
        self._records: list[str] = []  # stored since the follow began
        self._followers = followers
        self._wake = asyncio.Event()
        self._ended = False
        self._taken: list[wire.LogLine] = []
        self._pos = 0

    def push(self, records: list[str]) -> bool:
        """Add a stored batch; False (and the follower ends once it has taken
        what it has) when it is FOLLOW_QUEUE_MAX lines behind."""
        if len(self._records) + len(records) > FOLLOW_QUEUE_MAX:
            self.end()
            return False
        self._records.extend(records)
        self._wake.set()
        return True

    def end(self) -> None:
        self._ended = True
        self._wake.set()

    async def chunk(self, most: int, timeout: float | None = None) -> bytes | None:
        """Up to ``most`` lines' records, oldest first, as one NDJSON chunk,
        waiting up to ``timeout`` for one: b"" when none came in time, None
        once it ended and all was taken. Safe to cancel: nothing is taken
        until the wait is over.

        The history comes first, a block per call (StoredHistory.step), so a
        long one never holds the loop: before each block it runs everything
        else, the tailer's pushes included (they wait in ``_records``)."""
        while self._history is not None:
            # A pass of the loop before each block, whether or not the stream's
            # writes wait (to a fast client they need not).
            await asyncio.sleep(0)
            if self._history is None:  # closed meanwhile
                break
            records = self._history.step(most)
            if records:
                return "".join(records).encode()
            if records is None:
                self._history = None
        if not self._records and not self._ended:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        if len(self._records) <= most:
            records, self._records = self._records, []
        else:
            records = self._records[:most]
            del self._records[:most]
        if records:
            return "".join(records).encode()
        return None if self._ended else b""

    async def batch(self, most: int, timeout: float | None = None) -> list[wire.LogLine] | None:
        """As :meth:`chunk`, as lines: [] when none came in time."""
        chunk = await self.chunk(most, timeout)
        if chunk is None:
            return None
        return [record_line(record) for record in chunk.splitlines()]

    def close(self) -> None:
        """Stop following (the tailer forgets this follower, its files are closed)."""
        self._followers.discard(self)
        if self._history is not None:
            self._history.close()
            self._history = None

    async def aclose(self) -> None:
        self.close()

    def __aiter__(self) -> LogFollow:
        return self

    async def __anext__(self) -> wire.LogLine:
        if self._pos >= len(self._taken):
            try:
                taken = await self.batch(FOLLOW_QUEUE_MAX)
                while taken == []:  # only after a timeout, and there is none here
                    taken = await self.batch(FOLLOW_QUEUE_MAX)
            except BaseException:  # cancelled: a follower nobody reads is forgotten
                self.close()
                raise
            if taken is None:
                self.close()
                raise StopAsyncIteration
            self._taken, self._pos = taken, 0
        self._pos += 1
        return self._taken[self._pos - 1]


RECORD_HEAD = b'{"time":"'  # line_json's records; the time is the next 27 bytes


def stored_record(raw: bytes) -> tuple[str, str] | None:
    """(time, record) of one line of log.jsonl; None for a torn one.

    Records this agent wrote (line_json: ASCII, the time first, at a fixed
    place) are taken as they are: a whole one ends with a newline, which a
    torn write lacks, and holds its head once (inside a JSON string the
    quotes would be escaped); a piece torn by a power cut that the next
    append went on from has two. Anything else (older files' lines) is
    parsed and encoded anew, or skipped when it does not parse."""
    if (
        raw.startswith(RECORD_HEAD)
        and raw.endswith(b"}\n")
        and raw[36:38] == b'",'
        and raw.count(RECORD_HEAD) == 1
    ):
        record = raw.decode("ascii", errors="replace")
        return record[9:36], record
    line = _parse(raw)
    return None if line is None else (line.time, line_json(line))


def _parse(raw: str | bytes) -> wire.LogLine | None:
    try:
        data = json.loads(raw)
        n = data.get("n", 0)
        return wire.LogLine(data["time"], data["stream"], data["line"], n if type(n) is int else 0)
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line after a crash: skip it rather than fail the read


def parse_stored(raw: str | bytes) -> wire.LogLine | None:
    """A record of log.jsonl as a line; None for a damaged one."""
    return _parse(raw)


def record_line(record: str | bytes) -> wire.LogLine:
    """A record this agent just wrote, as a line (it always parses)."""
    line = _parse(record)
    assert line is not None
    return line
