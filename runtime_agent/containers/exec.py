"""``exec``: a command run in a running container, its output streamed as it
comes. No thread per command: the pipes of ``runc exec`` are read by the
event loop as they become readable, and a command whose caller went away or
whose time ran out is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from runtime_agent import wire
from runtime_agent.containers.records import Store
from runtime_agent.oci.runc import Runc, stop_exec

log = logging.getLogger("runtime_agent.containers")
EXEC_READ = 64 * 1024


class ExecRunner:
    """Starts ``runc exec`` for a container; its pid file lives in the
    container's directory so a teardown removes a leftover one."""

    def __init__(self, runc: Runc, store: Store) -> None:
        self.runc = runc
        self.store = store

    def start(
        self, name: str, req: wire.ExecRequest
    ) -> AsyncGenerator[tuple[str, bytes | int], None]:
        """Yields ``(stream, chunk)`` as output arrives, then ``("exit", code)``."""
        pid_file = self.store.container_dir(name) / f"exec-{uuid.uuid4().hex[:12]}.pid"
        proc = self.runc.exec(name, req.cmd, req.env, req.working_dir, pid_file=pid_file)
        return _exec_stream(proc, pid_file, req.timeout_s)


async def _exec_stream(
    proc: Any, pid_file: Path, timeout_s: float
) -> AsyncGenerator[tuple[str, bytes | int], None]:
    """Stream a ``runc exec``'s output without threads: its pipes are read
    by the event loop as they become readable."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    pipes = {"stdout": proc.stdout, "stderr": proc.stderr}
    for stream, pipe in pipes.items():
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        loop.add_reader(fd, _reader(fd, stream, queue, loop))
    open_pipes, finished = len(pipes), False
    deadline = loop.time() + timeout_s
    try:
        while open_pipes:
            try:
                stream, chunk = await asyncio.wait_for(queue.get(), deadline - loop.time())
            except TimeoutError:
                break
            if not chunk:
                open_pipes -= 1
                continue
            yield stream, chunk
        if open_pipes:
            log.info("exec timed out after %.1fs: killing it", timeout_s)
            code = await asyncio.to_thread(stop_exec, proc, pid_file)
        else:
            code = await asyncio.to_thread(proc.wait)
        finished = True
        yield "exit", code
    finally:
        for pipe in pipes.values():
            loop.remove_reader(pipe.fileno())
            pipe.close()
        if not finished:  # the caller went away: do not leave the command running
            await asyncio.to_thread(stop_exec, proc, pid_file)
        pid_file.unlink(missing_ok=True)


def _reader(
    fd: int, stream: str, queue: asyncio.Queue[tuple[str, bytes]], loop: asyncio.AbstractEventLoop
) -> Callable[[], None]:
    def on_readable() -> None:
        try:
            data = os.read(fd, EXEC_READ)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(fd)  # EOF: b"" tells the consumer this pipe is done
        queue.put_nowait((stream, data))

    return on_readable
