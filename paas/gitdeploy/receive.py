"""A push (``git-receive-pack``), held at its end.

receive-pack's status report (side-band 1) is kept back while its progress
(side-band 2) passes through; once the refs are in, a push to the deploy
branch is built and rolled out, its log written as more side-band 2 lines
(``remote: ...``), and only then is the report sent, with ``ng <branch>
<reason>`` instead of ``ok`` when the deploy failed, so ``git push`` exits
non-zero. The branch is then set back to where it was, so pushing again
retries. Bad ref names are refused before git runs.
"""

from __future__ import annotations

import gzip
import io
import logging
import subprocess
from collections.abc import Generator
from pathlib import Path
from typing import BinaryIO

from django.contrib.auth.models import User

from paas.applications.models import App
from paas.gitdeploy import pktline
from paas.gitdeploy.backend import GitCall, GitResponse, capped, finish, pass_through, start_backend
from paas.gitdeploy.deploys import deploy_and_follow
from paas.gitdeploy.git import git_run
from paas.gitdeploy.refs import ZERO_SHA, ref_problem
from paas.gitdeploy.repos import ref_sha
from paas.gitdeploy.services import deploy_branch_of

log = logging.getLogger(__name__)


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
    limit = pktline.sideband_limit(push.capabilities)
    body = b"".join(pktline.sideband(1, report, limit)) + pktline.FLUSH if limit else report
    return GitResponse(
        200,
        {"Content-Type": "application/x-git-receive-pack-result", "Cache-Control": "no-cache"},
        lambda: iter([body]),
    )


def receive_pack(call: GitCall, app: App, repo: Path) -> GitResponse:
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
    body = capped(io.BufferedReader(_Chained(head, raw)))
    proc, status, headers = start_backend(call, app, repo, body)
    if status != 200:
        return GitResponse(status, headers, lambda: pass_through(proc))
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
    limit = pktline.sideband_limit(push.capabilities)
    sideband = limit > 0
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
        finish(proc)
    report = pktline.report_lines(bytes(held))
    command = next((c for c in push.commands if c.ref == deploy_ref), None)
    if command is not None and f"ok {deploy_ref}" in report:
        reason = yield from _deploy(app, user, repo, command, limit)
        if reason:
            _reset_ref(repo, command)
            report = pktline.report_reject(report, deploy_ref, reason)
    others = [c.ref for c in push.commands if c.ref != deploy_ref and f"ok {c.ref}" in report]
    if others and sideband:
        branch = deploy_ref.removeprefix("refs/heads/")
        stored = f"Stored, not deployed (the deploy branch is {branch}): " + ", ".join(others)
        yield pktline.progress(stored, limit)
    encoded = pktline.report_encode(report)
    if sideband:
        yield from pktline.sideband(1, encoded, limit)
        yield pktline.FLUSH
    else:
        yield encoded


def _deploy(
    app: App,
    user: User | None,
    repo: Path,
    command: pktline.Command,
    limit: int,
) -> Generator[bytes, None, str | None]:
    """Run the deploy of the pushed commit, yielding its lines as progress
    packets of at most ``limit`` bytes (nothing without side-band: the client
    cannot show them); the reason it failed (one short line), or None."""

    def say(line: str | None) -> bytes:
        if not limit:
            return b""
        # None: an empty side-band 1 packet, what receive-pack itself sends
        # to keep a quiet connection alive (the client ignores it).
        return pktline.KEEPALIVE if line is None else pktline.progress(line, limit)

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
