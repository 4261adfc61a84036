#!/usr/bin/env python3
"""Run a Procfile's processes in the foreground until one stops (scripts/up).

What honcho did for scripts/up, in one small process: every line of the
Procfile (``name: command``) starts in its own session with the environment
plus an env file's variables, its output is printed line by line as
``HH:MM:SS name | line``; when one process stops, or on SIGINT/SIGTERM, every
other gets SIGTERM (to its process group, so its children too: nginx's
workers, Celery's pool) and, after ``--stop-wait`` seconds, SIGKILL. The exit
code is the first stopped process's (or 130/143 after SIGINT/SIGTERM).

Why not honcho: it forks a Python process per line to watch it (8 lines,
~30 MiB PSS together) and leaves a ``sh -c`` per line in between. Here one
process watches every child through its pipe, and a line that is one simple
command runs as ``sh -c 'exec LINE'``: the shell expands ``$VARS`` and
becomes the command (a line with ``;``, ``&``, ``|``, redirections or
subshells runs as it is, under its shell). Standard library only, so it
stays small (run it with ``python3 -I -S``).

Usage: run_procfile.py [-e ENV_FILE] [-f PROCFILE] [--stop-wait SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LINE_RE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
# More than one simple command: ``exec`` in front would change what it does.
SHELL_SYNTAX = re.compile(r"[;&|<>()`\n]")
MAX_LINE = 64 * 1024  # bytes held for one line before it is printed anyway
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def parse_procfile(text: str) -> dict[str, str]:
    """``name: command`` lines (blank and ``#`` lines skipped), in order."""
    processes: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LINE_RE.match(line)
        if match is None:
            raise SystemExit(f"Procfile line {number} is not 'name: command': {line!r}")
        if match[1] in processes:
            raise SystemExit(f"Procfile line {number}: {match[1]!r} is defined twice")
        processes[match[1]] = match[2]
    return processes


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` and surrounding quotes allowed)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def groups_alive(groups: set[int]) -> set[int]:
    """Which of these process groups still have a (non-zombie) member."""
    alive = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in groups:
                alive.add(int(fields[2]))
    return alive


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    pending: bytes = b""
    returncode: int | None = None


@dataclass
class Supervisor:
    width: int
    stop_wait_s: float
    children: list[Child] = field(default_factory=list)
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    exit_code: int | None = None
    stop_started: float | None = None
    killed: bool = False
    received: signal.Signals | None = None

    def say(self, name: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        sys.stdout.write(f"{stamp} {name:<{self.width}} | {text}\n")
        sys.stdout.flush()

    def start(self, name: str, command: str, env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command if SHELL_SYNTAX.search(command) else f"exec {command}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a terminal's Ctrl-C reaches us only
        )
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        child = Child(name, proc)
        self.children.append(child)
        self.selector.register(proc.stdout, selectors.EVENT_READ, child)
        self.say("system", f"{name} started (pid={proc.pid})")

    def on_signal(self, signum: int, _frame: object) -> None:
        # Only noted here: the loop acts on it (printing from a handler could
        # re-enter a write to stdout the signal interrupted).
        self.received = signal.Signals(signum)

    def act_on_signal(self) -> None:
        received, self.received = self.received, None
        if received is not None:
            self.say("system", f"{received.name} received")
            if self.exit_code is None:
                self.exit_code = SIGNAL_EXIT.get(received, 1)
            self.stop()

    def stop(self) -> None:
        if self.stop_started is None:
            self.stop_started = time.monotonic()
            self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: signal.Signals) -> None:
        for child in self.children:
            if child.returncode is None:
                self.say("system", f"sending {sig.name} to {child.name} (pid {child.proc.pid})")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, sig)

    def pump(self, timeout: float) -> None:
        """Print what the children wrote; a closed pipe is unregistered."""
        for key, _ in self.selector.select(timeout):
            child: Child = key.data
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                self.selector.unregister(key.fileobj)
                data = b"\n" if child.pending else b""
            lines = (child.pending + data).split(b"\n")
            child.pending = lines.pop()
            while len(child.pending) >= MAX_LINE:  # no newline yet: print in pieces
                lines.append(child.pending[:MAX_LINE])
                child.pending = child.pending[MAX_LINE:]
            for line in lines:
                self.say(child.name, line.decode(errors="replace").rstrip("\r"))

    def reap(self) -> None:
        self.act_on_signal()
        for child in self.children:
            if child.returncode is None and (code := child.proc.poll()) is not None:
                child.returncode = code
                self.say("system", f"{child.name} stopped (rc={code})")
                if self.exit_code is None:
                    self.exit_code = code
                self.stop()
        since = self.stop_started
        if since is not None and not self.killed and time.monotonic() - since > self.stop_wait_s:
            self.killed = True
            self._signal_all(signal.SIGKILL)

    def run(self) -> int:
        while any(c.returncode is None for c in self.children):
            self.pump(0.1)
            self.reap()
        # A line's own children may outlive it (a shell killed before what it
        # started): they get the rest of the wait, then SIGKILL like the others.
        groups = {c.proc.pid for c in self.children}
        while groups_alive(groups) and not self.killed:
            self.pump(0.1)
            self.reap()
        for group in groups_alive(groups):
            self.say("system", f"sending SIGKILL to what is left of process group {group}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        # What is left in the pipes; a grandchild that outlives its parent
        # (and holds the pipe) does not keep us waiting.
        deadline = time.monotonic() + 1.0
        while self.selector.get_map() and time.monotonic() < deadline:
            self.pump(0.1)
        return self.exit_code or 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-e", "--env", type=Path, help="an env file of KEY=VALUE lines")
    parser.add_argument("-f", "--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("--stop-wait", type=float, default=10.0, help="SIGTERM to SIGKILL")
    args = parser.parse_args()
    processes = parse_procfile(args.procfile.read_text())
    env = dict(os.environ)
    if args.env is not None:
        env.update(parse_env_file(args.env.read_text()))
    names = [f"{name}.1" for name in processes]
    width = max(len(n) for n in [*names, "system"])
    supervisor = Supervisor(width=width, stop_wait_s=args.stop_wait)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    for name, (_, command) in zip(names, processes.items(), strict=True):
        supervisor.start(name, command, env)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
