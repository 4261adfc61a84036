#!/usr/bin/env python3
"""Run a Procfile's processes in the foreground, restarting one that dies (scripts/up).

What honcho did for scripts/up, in one small process: every line of the
Procfile (``name: command``) starts in its own session with the environment
plus an env file's variables, its output is printed line by line as
``HH:MM:SS name | line``. On SIGINT/SIGTERM every process gets SIGTERM (to
its process group, so its children too: nginx's workers, Celery's pool) and,
after ``--stop-wait`` seconds, SIGKILL; the exit code is then 130/143.

A process that exits on its own is started again, like systemd's
``Restart=``: ``name | exited with code N; restarting in S s`` is printed,
what it left in its process group gets SIGTERM (SIGKILL after
``--stop-wait``) and must be gone before it starts again (nginx under the
router would hold its port), and the wait doubles from ``--backoff`` (1 s)
up to ``--backoff-max`` (30 s), back to ``--backoff`` once a run lasted
``--stable-after`` (60 s). A crash loop, a process exiting once more after
``--restart-limit`` (5) restarts within ``--restart-window`` (300 s), stops
everything as above, with a line naming it, and the exit code is its code
(1 if it was 0; 128 + N when killed by signal N). ``--restart`` says which
exits restart: ``always`` (the default: every process of the platform is
meant to run for ever, so even a clean exit is a fault), ``on-failure``
(a clean exit stops everything) or ``no`` (honcho's way: the first process
to stop stops everything, and its code is the exit code). Nothing restarts
once a stop has begun.

Why not honcho: it forks a Python process per line to watch it (8 lines,
~30 MiB PSS together) and leaves a ``sh -c`` per line in between. Here one
process watches every child through its pipe, and a line that is one simple
command runs as ``sh -c 'exec LINE'``: the shell expands ``$VARS`` and
becomes the command (a line with ``;``, ``&``, ``|``, redirections or
subshells runs as it is, under its shell). Standard library only, so it
stays small (run it with ``python3 -I -S``).

Usage: run_procfile.py [-e ENV_FILE] [-f PROCFILE] [--stop-wait SECONDS]
       [--restart always|on-failure|no] [--backoff S] [--backoff-max S]
       [--stable-after S] [--restart-limit N] [--restart-window S]
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import os
import re
import selectors
import signal
import subprocess
import sys
import time

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


class Restart(enum.Enum):
    """When a line that exits on its own is started again (systemd's Restart=)."""

    ALWAYS = "always"  # whatever its exit code
    ON_FAILURE = "on-failure"  # a non-zero code or a signal; a clean exit stops everything
    NO = "no"  # never: the first exit stops everything (honcho's way)


# Plain classes, no dataclasses or pathlib: importing those (with inspect,
# ast, tokenize, dis behind dataclasses) cost this process ~2 MiB of its ~8.
class RestartPolicy:
    def __init__(
        self,
        mode: Restart = Restart.ALWAYS,
        backoff_s: float = 1.0,  # the first wait; doubled at each restart ...
        backoff_max_s: float = 30.0,  # ... up to this
        stable_s: float = 60.0,  # a run this long resets the wait to backoff_s
        limit: int = 5,  # more restarts than this within window_s: a crash loop
        window_s: float = 300.0,
    ) -> None:
        self.mode = mode
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.stable_s = stable_s
        self.limit = limit
        self.window_s = window_s

    def restarts(self, code: int) -> bool:
        return self.mode is Restart.ALWAYS or (self.mode is Restart.ON_FAILURE and code != 0)


def exit_code(returncode: int) -> int:
    """A shell's view of a Popen return code: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Stream:
    """One process's pipe: a restarted line gets a new one, while the old one
    may still hold the end of its last line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending = b""


class Child:
    def __init__(
        self,
        name: str,
        command: str,
        proc: subprocess.Popen[bytes],
        started_at: float,
        backoff_s: float = 0.0,
    ) -> None:
        self.name = name
        self.command = command
        self.proc = proc
        self.started_at = started_at
        self.returncode: int | None = None
        self.backoff_s = backoff_s
        self.restart_at: float | None = None  # waiting out its backoff
        self.term_sent_at: float | None = None  # its exit's leftovers got SIGTERM then
        self.restarts: list[float] = []  # when, within the window


class Supervisor:
    def __init__(
        self, width: int, stop_wait_s: float, env: dict[str, str], policy: RestartPolicy
    ) -> None:
        self.width = width
        self.stop_wait_s = stop_wait_s
        self.env = env
        self.policy = policy
        self.children: list[Child] = []
        self.groups: set[int] = set()  # every group ever started
        self.selector: selectors.BaseSelector = selectors.DefaultSelector()
        self.exit_code: int | None = None
        self.stop_started: float | None = None
        self.killed = False
        self.received: signal.Signals | None = None

    def say(self, name: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        sys.stdout.write(f"{stamp} {name:<{self.width}} | {text}\n")
        sys.stdout.flush()

    def _spawn(self, name: str, command: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command if SHELL_SYNTAX.search(command) else f"exec {command}"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a terminal's Ctrl-C reaches us only
        )
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self.selector.register(proc.stdout, selectors.EVENT_READ, Stream(name))
        self.groups.add(proc.pid)
        self.say("system", f"{name} started (pid={proc.pid})")
        return proc

    def start(self, name: str, command: str) -> None:
        proc = self._spawn(name, command)
        self.children.append(
            Child(name, command, proc, time.monotonic(), backoff_s=self.policy.backoff_s)
        )

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
            for child in self.children:
                child.restart_at = None  # a restart never races the shutdown
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
            stream: Stream = key.data
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                self.selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                data = b"\n" if stream.pending else b""
            lines = (stream.pending + data).split(b"\n")
            stream.pending = lines.pop()
            while len(stream.pending) >= MAX_LINE:  # no newline yet: print in pieces
                lines.append(stream.pending[:MAX_LINE])
                stream.pending = stream.pending[MAX_LINE:]
            for line in lines:
                self.say(stream.name, line.decode(errors="replace").rstrip("\r"))

    def reap(self) -> None:
        self.act_on_signal()
        for child in self.children:
            if child.returncode is None and (code := child.proc.poll()) is not None:
                child.returncode = code
                self.on_exit(child, exit_code(code))
        for child in self.children:
            if child.restart_at is not None:
                self.restart_when_due(child)
        since = self.stop_started
        if since is not None and not self.killed and time.monotonic() - since > self.stop_wait_s:
            self.killed = True
            self._signal_all(signal.SIGKILL)

    def on_exit(self, child: Child, code: int) -> None:
        if self.stop_started is not None:
            self.say("system", f"{child.name} stopped (rc={code})")
            return
        now = time.monotonic()
        window = [t for t in child.restarts if now - t < self.policy.window_s]
        child.restarts = window
        if not self.policy.restarts(code):
            self.say("system", f"{child.name} stopped (rc={code})")
            self.stop_platform(code)
            return
        if len(window) >= self.policy.limit:
            self.say(
                "system",
                f"{child.name} exited with code {code} after {len(window)} restarts in "
                f"{self.policy.window_s:g} s: crash loop, stopping everything",
            )
            self.stop_platform(code or 1)
            return
        if now - child.started_at >= self.policy.stable_s:
            child.backoff_s = self.policy.backoff_s  # it ran fine for a while: start over
        wait = child.backoff_s
        child.backoff_s = min(wait * 2, self.policy.backoff_max_s)
        child.restart_at = now + wait
        self.say(child.name, f"exited with code {code}; restarting in {wait:g} s")
        # What it started may outlive it in its group (nginx under the router,
        # say) and hold its port: it goes first, SIGKILL after --stop-wait.
        if groups_alive({child.proc.pid}):
            child.term_sent_at = now
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)

    def stop_platform(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
        self.stop()

    def restart_when_due(self, child: Child) -> None:
        now = time.monotonic()
        assert child.restart_at is not None
        if now < child.restart_at:
            return
        if child.term_sent_at is not None and groups_alive({child.proc.pid}):
            if now - child.term_sent_at > self.stop_wait_s:
                self.say("system", f"sending SIGKILL to what is left of {child.name}'s group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.term_sent_at = now  # again after a wait, not at every turn
            return
        self.groups.discard(child.proc.pid)  # empty: nothing can join it again
        child.restart_at = child.term_sent_at = child.returncode = None
        child.restarts.append(now)
        child.started_at = now
        child.proc = self._spawn(child.name, child.command)

    def run(self) -> int:
        while self.children and not (
            self.stop_started is not None and all(c.returncode is not None for c in self.children)
        ):
            self.pump(0.1)
            self.reap()
        # A line's own children may outlive it (a shell killed before what it
        # started): they get the rest of the wait, then SIGKILL like the others.
        while groups_alive(self.groups) and not self.killed:
            self.pump(0.1)
            self.reap()
        for group in groups_alive(self.groups):
            self.say("system", f"sending SIGKILL to what is left of process group {group}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        # What is left in the pipes; a grandchild that outlives its parent
        # (and holds the pipe) does not keep us waiting.
        deadline = time.monotonic() + 1.0
        while self.selector.get_map() and time.monotonic() < deadline:
            self.pump(0.1)
        return self.exit_code or 0


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-e", "--env", help="an env file of KEY=VALUE lines")
    parser.add_argument("-f", "--procfile", default="Procfile")
    parser.add_argument("--stop-wait", type=float, default=10.0, help="SIGTERM to SIGKILL")
    defaults = RestartPolicy()
    parser.add_argument(
        "--restart",
        choices=[mode.value for mode in Restart],
        default=defaults.mode.value,
        help="which exits start a line again: always, on-failure (non-zero or a signal; "
        "a clean exit stops everything), no (the first exit stops everything)",
    )
    parser.add_argument("--backoff", type=float, default=defaults.backoff_s)
    parser.add_argument("--backoff-max", type=float, default=defaults.backoff_max_s)
    parser.add_argument(
        "--stable-after", type=float, default=defaults.stable_s, help="run this long: backoff reset"
    )
    parser.add_argument(
        "--restart-limit", type=int, default=defaults.limit, help="restarts allowed per window"
    )
    parser.add_argument("--restart-window", type=float, default=defaults.window_s)
    args = parser.parse_args()
    numbers = (args.stop_wait, args.backoff, args.backoff_max, args.stable_after)
    if min(numbers) < 0 or args.restart_limit < 0 or args.restart_window <= 0:
        parser.error("waits, backoffs and the limit are >= 0, the window > 0")
    if args.backoff > args.backoff_max:
        parser.error(f"--backoff {args.backoff:g} is more than --backoff-max {args.backoff_max:g}")
    return args


def main() -> int:
    args = parse_args()
    processes = parse_procfile(read_text(args.procfile))
    env = dict(os.environ)
    if args.env is not None:
        env.update(parse_env_file(read_text(args.env)))
    names = [f"{name}.1" for name in processes]
    width = max(len(n) for n in [*names, "system"])
    policy = RestartPolicy(
        mode=Restart(args.restart),
        backoff_s=args.backoff,
        backoff_max_s=args.backoff_max,
        stable_s=args.stable_after,
        limit=args.restart_limit,
        window_s=args.restart_window,
    )
    supervisor = Supervisor(width=width, stop_wait_s=args.stop_wait, env=env, policy=policy)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    for name, (_, command) in zip(names, processes.items(), strict=True):
        supervisor.start(name, command)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
