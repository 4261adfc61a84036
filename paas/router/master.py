"""The running nginx master of a router directory: finding it, asking it
which generation it serves, and reloading it gracefully."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from paas.router.config import RouterConfig
from paas.router.errors import RouterReloadFailed

POLL_S = 0.01
STATUS_TIMEOUT_S = 2.0


def master_pid(config: RouterConfig) -> int | None:
    """The pid of this directory's nginx master, if it runs. The pid file
    alone could name a reused pid: the command line must name our config."""
    try:
        pid = int(config.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    text = cmdline.replace(b"\0", b" ").decode(errors="replace")
    if "nginx: master process" in text and str(config.live_conf) in text:
        return pid
    return None


def serving_generation(config: RouterConfig) -> int | None:
    """Ask the status socket which generation answers new connections."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(STATUS_TIMEOUT_S)
            sock.connect(str(config.status_socket))
            sock.sendall(b"GET /generation HTTP/1.0\r\nHost: router\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or not body.strip().isdigit():
        return None
    return int(body)


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: scan /proc
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(pid):
                children.append(stat.parent.name)
        return children


def _accepting_workers(master: int) -> set[int]:
    """The master's workers that still accept connections. A worker told to
    quit renames itself "... is shutting down" and closes its listening
    sockets in the same step of its event loop, so it never accepts again."""
    accepting = set()
    for child in _children(master):
        try:
            title = Path(f"/proc/{child}/cmdline").read_bytes().rstrip(b"\0")
        except OSError:
            continue  # it has just exited
        if title == b"nginx: worker process":
            accepting.add(int(child))
    return accepting


def reload(config: RouterConfig, pid: int, generation: int) -> None:
    """SIGHUP, then wait until the new generation answers and none of the
    workers that ran before still accepts: after that, every new connection
    gets the new config."""
    log_size = _size(config.error_log)
    old_workers = _accepting_workers(pid)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + config.reload_timeout
    while serving_generation(config) != generation or _accepting_workers(pid) & old_workers:
        emerg = _new_emergencies(config.error_log, log_size)
        if emerg:
            raise RouterReloadFailed(f"nginx did not load the new router config: {emerg}")
        if master_pid(config) is None:
            raise RouterReloadFailed("nginx stopped while reloading the router config.")
        if time.monotonic() > deadline:
            raise RouterReloadFailed(
                f"nginx did not serve the new router config within {config.reload_timeout} s "
                f"(see {config.error_log})."
            )
        time.sleep(POLL_S)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _new_emergencies(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read(64 * 1024).decode(errors="replace")
    except OSError:
        return ""
    return "; ".join(line for line in text.splitlines() if "[emerg]" in line)[-2000:]
