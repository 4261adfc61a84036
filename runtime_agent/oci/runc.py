"""runc, driven through the one command wrapper (:mod:`runtime_agent.host.cmd`).

Containers are created *detached*: ``runc create`` (or ``runc run
--detach``) hands the container's init our log files as stdout/stderr and
exits, so no process of ours stays behind per container (no shim, no
conmon). runc's own diagnostics go to a JSON ``--log`` file in the bundle,
read back into the error when create fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime_agent.host import cmd
from runtime_agent.host.errors import CommandFailed, Conflict, NotFound, UnsafeRuntime
from runtime_agent.oci import spec
from runtime_agent.wire import Limits

log = logging.getLogger("runtime_agent.runc")

LOG_NAME = "runc.log"


class Runc:
    """One runc state directory (``--root``) and the commands on it."""

    def __init__(self, root: Path, binary: str = "runc", *, timeout_s: float = 30.0) -> None:
        self.root = Path(root)
        self.binary = binary
        # runc itself answers in milliseconds; a timeout only catches a wedged
        # host (frozen cgroup, stuck mount) instead of hanging the agent.
        self.timeout_s = timeout_s

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def _run(self, *args: str, permanent: bool = False) -> subprocess.CompletedProcess[bytes]:
        return cmd.run(self._argv(*args), timeout=self.timeout_s, permanent=permanent)

    # --- lifecycle -----------------------------------------------------------

    def create(
        self,
        cid: str,
        bundle: Path,
        *,
        stdout_fd: int,
        stderr_fd: int,
        pid_file: Path,
        failure_expected: bool = False,
    ) -> int:
        """Create the container (its init waits for :meth:`start`) and return
        its host pid. The container writes straight to ``stdout_fd`` and
        ``stderr_fd``; its stdin is /dev/null.

        runc shares its stdio with the container it creates, so when create
        fails runc's one-line complaint also lands in ``stderr_fd``; the full
        story comes from runc's log into the raised :class:`CommandFailed`.
        """
        return self._detached(
            "create", cid, bundle, stdout_fd=stdout_fd, stderr_fd=stderr_fd, pid_file=pid_file,
            failure_expected=failure_expected,
        )  # fmt: skip

    def run_detached(
        self, cid: str, bundle: Path, *, stdout_fd: int, stderr_fd: int, pid_file: Path
    ) -> int:
        """Create and start the container in one runc process (``runc run
        --detach``) and return its host pid; stdio and errors as in :meth:`create`.

        Half the runc processes of create + start: each runc invocation costs
        ~10 ms of Go start-up and state loading, and the container's process is
        running when this returns. When it fails, runc has already removed
        what it made of the container.
        """
        return self._detached(
            "run", cid, bundle, stdout_fd=stdout_fd, stderr_fd=stderr_fd, pid_file=pid_file
        )

    def _detached(
        self,
        verb: str,
        cid: str,
        bundle: Path,
        *,
        stdout_fd: int,
        stderr_fd: int,
        pid_file: Path,
        failure_expected: bool = False,
    ) -> int:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_file = Path(bundle) / LOG_NAME
        log_file.unlink(missing_ok=True)
        detach = ["--detach"] if verb == "run" else []
        argv = self._argv(
            "--log", str(log_file), "--log-format", "json",
            verb, *detach, "--bundle", str(bundle), "--pid-file", str(pid_file), cid,
        )  # fmt: skip
        try:
            # runc passes its own stdio to the detached container, so these
            # fds are the container's; runc's errors are read from --log.
            cmd.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout_fd,
                stderr=stderr_fd,
                timeout=self.timeout_s,
                failure_expected=failure_expected,
            )
        except CommandFailed as exc:
            raise _create_error(cid, exc, log_file) from None
        return int(Path(pid_file).read_text().strip())

    def start(self, cid: str) -> None:
        """Let a created container's init exec the process."""
        self._checked(cid, "start", cid)

    def state(self, cid: str) -> dict[str, Any] | None:
        """runc's view (``status``: created, running, paused, stopped; ``pid``),
        or None when runc does not know the container."""
        try:
            proc = self._run("state", cid)
        except CommandFailed as exc:
            if _is_missing(exc):
                return None
            raise
        state: dict[str, Any] = json.loads(proc.stdout)
        return state

    def kill(self, cid: str, sig: str | int = "TERM", *, all: bool = False) -> bool:
        """Send ``sig`` (a name like "KILL"/"SIGKILL" or a number) to the
        container's init, or with ``all`` to every process in it.

        Returns False when the container was no longer running: the process
        may exit between a caller's look and the signal, which is not an error.
        """
        args = ["kill", *(["--all"] if all else []), cid, str(sig)]
        try:
            self._checked(cid, *args)
        except Conflict:
            return False
        return True

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Remove runc's record and the container's cgroups (read stats and
        the OOM flag before this). ``force`` kills a running container first
        and makes deleting an unknown container a no-op."""
        self._checked(cid, "delete", *(["--force"] if force else []), cid)

    def list(self) -> list[dict[str, Any]]:
        """Every container in this root (runc's ``list``)."""
        out = self._run("list", "--format", "json").stdout.strip()
        items = json.loads(out) if out else None
        return list(items or [])  # runc prints "null" for none

    def _checked(self, cid: str, *args: str) -> None:
        try:
            self._run(*args)
        except CommandFailed as exc:
            if _is_missing(exc):
                raise NotFound(f"container {cid} does not exist in runc", container=cid) from exc
            if "not running" in exc.stderr or "stopped container" in exc.stderr:
                raise Conflict(f"container {cid} is not running", container=cid) from exc
            raise

    def run_foreground(self, cid: str, bundle: Path) -> subprocess.Popen[bytes]:
        """``runc run --keep`` attached: the container's stdout and stderr come
        through one pipe and ``wait()`` gives its exit code, with no
        subreaper needed (build steps use this). ``--keep`` leaves the
        container for the caller to read its cgroup (the OOM flag) before
        :meth:`delete`."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv = self._argv("run", "--keep", "--bundle", str(bundle), cid)
        return cmd.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    # --- exec ----------------------------------------------------------------

    def exec(
        self,
        cid: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        *,
        pid_file: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run ``args`` in the running container and stream its output.

        The process inherits the container's user, capabilities, rlimits and
        seccomp filter from its config.json; ``env`` is added to the
        container's environment. ``wait()`` gives its exit code (128+n when
        killed by signal n). runc forwards the signals it receives, but not
        SIGKILL: to stop an exec for good, pass ``pid_file`` and use
        :func:`stop_exec`.
        """
        argv = self._argv("exec")
        if cwd:
            argv += ["--cwd", cwd]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        if pid_file is not None:
            argv += ["--pid-file", str(pid_file)]
        return cmd.popen([*argv, cid, *args])


def stop_exec(proc: subprocess.Popen[bytes], pid_file: Path, *, grace_s: float = 2.0) -> int:
    """Kill an exec'd process (SIGKILL to its host pid, which runc cannot
    forward) and return the exit code runc reports."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _is_missing(exc: CommandFailed) -> bool:
    return "does not exist" in exc.stderr


def _create_error(cid: str, exc: CommandFailed, log_file: Path) -> Exception:
    messages = list(_log_messages(log_file))
    detail = "\n".join(messages) or exc.stderr
    if "already exists" in detail or "exists" in detail and "container with id" in detail:
        return Conflict(f"container {cid} already exists in runc", container=cid)
    # runc could not exec the program (missing, not executable): the image or
    # the command is wrong, and creating again will fail the same way.
    permanent = exc.permanent or 'exec: "' in detail
    return CommandFailed(exc.argv, exc.returncode, detail, permanent=permanent)


def _log_messages(log_file: Path) -> Iterator[str]:
    """The warning and error lines of runc's JSON log (one object a line)."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return
    for line in lines[-200:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            yield line
            continue
        if entry.get("level") in ("warning", "error", "fatal", "panic"):
            yield str(entry.get("msg", line))


# --- CVE-2024-21626 ------------------------------------------------------------

VERDICT_FILE = "runtime-verdict.json"
_PROBE_FDS = range(3, 16)


def check_runtime_safe(runc: Runc, scratch_dir: Path) -> None:
    """Refuse a runc that lets a container start with its working directory
    on a file descriptor leaked from the host (CVE-2024-21626, "Leaky
    Vessels"): with such a cwd the container's process sits in the host's
    filesystem. Debian backports the fix without changing the version
    number, so we prove it rather than compare versions.

    The probe: a container with cwd "/" must create (else the probe proves
    nothing), and containers with cwd /proc/self/fd/N, for every fd runc
    could have leaked, must all be refused. The verdict is cached per runc
    binary (path, mtime, size) in ``scratch_dir``: a new runc is probed again.
    """
    key = _binary_key(runc.binary)
    cache = Path(scratch_dir) / VERDICT_FILE
    if _cached_verdict(cache) == key:
        return
    with _probe_bundle(Path(scratch_dir)) as bundle:
        refused = _probe(runc, bundle, "/")
        if refused is not None:
            raise UnsafeRuntime(
                f"runc cannot create even a plain probe container: {refused.message}",
                binary=key,
            )
        for fd in _PROBE_FDS:
            if _probe(runc, bundle, f"/proc/self/fd/{fd}") is None:
                raise UnsafeRuntime(
                    f"runc started a container whose working dir is /proc/self/fd/{fd}: it is "
                    "vulnerable to CVE-2024-21626; install runc 1.1.12 or later",
                    binary=key,
                )
    # Write-then-rename: a concurrent reader sees the old verdict or the new one.
    tmp = cache.with_name(f".{cache.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"safe": key}))
    tmp.replace(cache)
    log.info("runc %s refuses leaked-fd working dirs (CVE-2024-21626 fixed)", key)


def _binary_key(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise UnsafeRuntime(f"runc binary {binary!r} not found")
    real = os.path.realpath(path)
    st = os.stat(real)
    return f"{real}:{st.st_mtime_ns}:{st.st_size}"


def _cached_verdict(cache: Path) -> str | None:
    try:
        value = json.loads(cache.read_text()).get("safe")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def _probe_bundle(scratch_dir: Path) -> Iterator[Path]:
    bundle = scratch_dir / f"runc-probe-{uuid.uuid4().hex[:8]}"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    # runc checks only that the program exists and is executable before its
    # init waits for "start", which the probe never sends: an empty file will do.
    probe = rootfs / "probe"
    probe.touch(mode=0o755)
    try:
        yield bundle
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def _probe(runc: Runc, bundle: Path, cwd: str) -> CommandFailed | None:
    """None when ``runc create`` accepts a container with working dir
    ``cwd``, else runc's refusal."""
    cid = f"paas-probe-{uuid.uuid4().hex[:10]}"
    config = spec.build_spec(
        rootfs=bundle / "rootfs", args=["/probe"], env=[], cwd=cwd, uid=0, gid=0,
        additional_gids=[], hostname="probe", netns_path=None, mounts=[],
        limits=Limits(pids=8), cgroups_path=f"/{cid}",
    )  # fmt: skip
    (bundle / "config.json").write_text(json.dumps(config))
    with open(os.devnull, "wb") as null:
        try:
            runc.create(
                cid, bundle, stdout_fd=null.fileno(), stderr_fd=null.fileno(),
                pid_file=bundle / "probe.pid", failure_expected=True,
            )  # fmt: skip
        except CommandFailed as exc:
            log.debug("probe with cwd %s refused: %s", cwd, exc.stderr.strip())
            return exc
        finally:
            with contextlib.suppress(CommandFailed, NotFound):
                runc.delete(cid, force=True)
    return None
