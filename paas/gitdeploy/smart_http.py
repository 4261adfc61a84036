"""git's smart HTTP protocol, served by git's own ``git http-backend`` (a
CGI program) run with an argv list and a clean environment.

The repository is chosen by the platform (the app's id), never from the
URL: http-backend gets ``GIT_PROJECT_ROOT`` and a ``PATH_INFO`` we build.
Only the three smart endpoints exist (no dumb HTTP file access).

A push (``git-receive-pack``) is held at its end: receive-pack's status
report (side-band 1) is kept back while its progress (side-band 2) passes
through; once the refs are in, a push to the deploy branch is built and
rolled out, its log written as more side-band 2 lines (``remote: ...``),
and only then is the report sent, with ``ng <branch> <reason>`` instead of
``ok`` when the deploy failed, so ``git push`` exits non-zero. The branch is
then set back to where it was, so pushing again retries.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import subprocess
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import User

from paas.applications.models import App
from paas.gitdeploy import pktline
from paas.gitdeploy.deploys import deploy_and_follow
from paas.gitdeploy.git import git_popen, git_run
from paas.gitdeploy.refs import ZERO_SHA, ref_problem
from paas.gitdeploy.repos import ref_sha, repo_path
from paas.gitdeploy.services import deploy_branch_of

log = logging.getLogger(__name__)
SERVICES = {"git-upload-pack", "git-receive-pack"}
CHUNK = 64 * 1024


@dataclass
class GitCall:
    """What a request asks of http-backend, already checked by the view."""

    method: str
    endpoint: str  # info/refs, git-upload-pack or git-receive-pack
    service: str
    body: BinaryIO
    content_type: str = ""
    content_encoding: str = ""
    git_protocol: str = ""
    user: User | None = None
    remote_addr: str = ""


@dataclass
class GitResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Callable[[], Iterator[bytes]] = lambda: iter(())


class TooLarge(Exception):
    pass


def _capped(stream: BinaryIO, already: int = 0) -> Iterator[bytes]:
    size = already
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > settings.PAAS_MAX_UPLOAD_BYTES:
            raise TooLarge
        yield chunk


def _feed(proc: subprocess.Popen[bytes], chunks: Iterator[bytes]) -> None:
    """Write the request body to http-backend from a thread of its own
    (it may answer while it reads); a body over the cap is cut short, and
    receive-pack then refuses the truncated pack."""
    assert proc.stdin is not None
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
    except TooLarge:
        log.warning("a git request body was larger than PAAS_MAX_UPLOAD_BYTES; cut short")
    except (BrokenPipeError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _cgi_env(call: GitCall, app: App) -> dict[str, str]:
    env = {
        "GIT_PROJECT_ROOT": str(repo_path(app=app).parent),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{repo_path(app=app).name}/{call.endpoint}",
        "REQUEST_METHOD": call.method,
        "QUERY_STRING": f"service={call.service}" if call.endpoint == "info/refs" else "",
        "CONTENT_TYPE": call.content_type,
        "REMOTE_ADDR": call.remote_addr,
        "REMOTE_USER": call.user.get_username() if call.user else "",
        "GATEWAY_INTERFACE": "CGI/1.1",
    }
    if call.git_protocol:
        env["GIT_PROTOCOL"] = call.git_protocol
    if call.content_encoding:
        env["HTTP_CONTENT_ENCODING"] = call.content_encoding
    return env


def _backend_config(call: GitCall) -> dict[str, str]:
    # Pushing is switched on per request, for a user the view let deploy.
    receive = "true" if call.service == "git-receive-pack" else "false"
    return {
        "http.receivepack": receive,
        "http.uploadpack": "true",
        "receive.maxInputSize": str(settings.PAAS_MAX_UPLOAD_BYTES),
    }


def _read_headers(stdout: BinaryIO) -> tuple[int, dict[str, str]]:
    status, headers = 200, {}
    while True:
        line = stdout.readline(8192)
        if not line or line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name.lower() in ("content-type", "cache-control", "expires", "pragma"):
            headers[name] = value
    return status, headers


def _start_backend(
    call: GitCall, app: App, repo: Path, body: Iterator[bytes]
) -> tuple[subprocess.Popen[bytes], int, dict[str, str]]:
    proc = git_popen(
        ["http-backend"],
        repo=repo,
        config=_backend_config(call),
        env=_cgi_env(call, app),
        stdin=subprocess.PIPE,
    )
    threading.Thread(target=_feed, args=(proc, body), daemon=True).start()
    assert proc.stdout is not None
    status, headers = _read_headers(proc.stdout)  # type: ignore[arg-type]
    return proc, status, headers


def _pass_through(proc: subprocess.Popen[bytes]) -> Iterator[bytes]:
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read1(CHUNK):  # type: ignore[attr-defined]
            yield chunk
    finally:
        _finish(proc)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace").strip()
        if err:
            log.info("git http-backend: %s", err[:2000])


def git_serve(*, call: GitCall, app: App, repo: Path) -> GitResponse:
    """Answer one smart-HTTP request for ``app``'s repository; the caller
    has authenticated the user and checked their role for ``call.service``."""
    if call.endpoint == "git-receive-pack":
        return _receive_pack(call, app, repo)
    proc, status, headers = _start_backend(call, app, repo, _capped(call.body))
    return GitResponse(status, headers, lambda: _pass_through(proc))


# --- pushes --------------------------------------------------------------------


class _Recorder(io.RawIOBase):
    """Reads through ``stream`` and keeps what was read (the commands, which
    http-backend must still get)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.seen = stream, bytearray()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.seen += data
        return data


def _refusal(push: pktline.PushRequest, problems: dict[str, str]) -> GitResponse:
    """A receive-pack answer refusing every command, without running git."""
    lines = ["unpack ok"] + [
        f"ng {c.ref} {problems.get(c.ref, 'refused with the rest of the push')}"
        for c in push.commands
    ]
    report = pktline.report_encode(lines)
    sideband = "side-band-64k" in push.capabilities or "side-band" in push.capabilities
    body = b"".join(pktline.sideband(1, report)) + pktline.FLUSH if sideband else report
    return GitResponse(
        200,
        {"Content-Type": "application/x-git-receive-pack-result", "Cache-Control": "no-cache"},
        lambda: iter([body]),
    )


def _receive_pack(call: GitCall, app: App, repo: Path) -> GitResponse:
    raw: BinaryIO = call.body
    if call.content_encoding.lower() in ("gzip", "x-gzip"):
        raw = gzip.GzipFile(fileobj=call.body)  # type: ignore[assignment]
        call.content_encoding = ""
    recorder = _Recorder(raw)
    try:
        push = pktline.read_push_commands(recorder)  # type: ignore[arg-type]
    except pktline.PktError as exc:
        message = f"{exc}\n".encode()
        return GitResponse(400, {"Content-Type": "text/plain"}, lambda: iter([message]))
    deploy_ref = f"refs/heads/{deploy_branch_of(app=app)}"
    problems = {c.ref: p for c in push.commands if (p := ref_problem(c.ref))}
    problems.update(
        {c.ref: "the deploy branch cannot be deleted"
         for c in push.commands if c.ref == deploy_ref and c.new == ZERO_SHA}
    )  # fmt: skip
    if problems:
        return _refusal(push, problems)
    head = bytes(recorder.seen)
    body = _capped(io.BufferedReader(_Chained(head, raw)))
    proc, status, headers = _start_backend(call, app, repo, body)
    if status != 200:
        return GitResponse(status, headers, lambda: _pass_through(proc))
    return GitResponse(
        status, headers, lambda: _after_push(proc, push, app, call.user, repo, deploy_ref)
    )


class _Chained(io.RawIOBase):
    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _after_push(
    proc: subprocess.Popen[bytes],
    push: pktline.PushRequest,
    app: App,
    user: User | None,
    repo: Path,
    deploy_ref: str,
) -> Generator[bytes, None, None]:
    assert proc.stdout is not None
    sideband = "side-band-64k" in push.capabilities or "side-band" in push.capabilities
    held = bytearray()
    try:
        while (pkt := pktline.read_pkt(proc.stdout)) is not None:  # type: ignore[arg-type]
            if not sideband:
                held += pktline.encode(pkt)
            elif pkt[:1] == b"\x01":
                held += pkt[1:]
            else:
                yield pktline.encode(pkt)
    except pktline.PktError:
        log.warning("receive-pack's answer ended early")
    finally:
        _finish(proc)
    report = pktline.report_lines(bytes(held))
    command = next((c for c in push.commands if c.ref == deploy_ref), None)
    if command is not None and f"ok {deploy_ref}" in report:
        reason = yield from _deploy(app, user, repo, command, sideband)
        if reason:
            _reset_ref(repo, command)
            report = pktline.report_reject(report, deploy_ref, reason)
    others = [c.ref for c in push.commands if c.ref != deploy_ref and f"ok {c.ref}" in report]
    if others and sideband:
        yield pktline.progress(f"Stored, not deployed (the deploy branch is {deploy_ref[11:]}): "
                               + ", ".join(others))  # fmt: skip
    encoded = pktline.report_encode(report)
    if sideband:
        yield from pktline.sideband(1, encoded)
        yield pktline.FLUSH
    else:
        yield encoded


def _deploy(
    app: App,
    user: User | None,
    repo: Path,
    command: pktline.Command,
    sideband: bool,
) -> Generator[bytes, None, str | None]:
    """Run the deploy of the pushed commit, yielding its lines as progress
    packets (nothing without side-band: the client cannot show them); the
    reason it failed (one short line), or None."""

    def say(line: str | None) -> bytes:
        if not sideband:
            return b""
        # None: an empty side-band 1 packet, what receive-pack itself sends
        # to keep a quiet connection alive (the client ignores it).
        return pktline.KEEPALIVE if line is None else pktline.progress(line)

    if ref_sha(repo=repo, ref=command.ref) != command.new:
        return "the branch moved during the push"
    steps = deploy_and_follow(app=app, user=user, repo=repo, sha=command.new)
    try:
        while True:
            yield say(next(steps))
    except StopIteration as done:
        reason: str | None = done.value
    except Exception as exc:  # a refused archive, a database error...
        log.exception("deploy of a push to %s failed", app.name)
        reason = getattr(exc, "message", None) or "internal error"
        yield say(f"!!     {reason}")
    if reason:
        yield say(f"!!     Deploy failed: {reason}")
        return " ".join(reason.split())[:200]
    return None


def _reset_ref(repo: Path, command: pktline.Command) -> None:
    """Put the branch back where it was before the failed push (only if
    nobody moved it since), so pushing the same commit again retries."""
    if command.old == ZERO_SHA:
        args = ["update-ref", "-d", command.ref, command.new]
    else:
        args = ["update-ref", command.ref, command.old, command.new]
    git_run(args, repo=repo, check=False)
