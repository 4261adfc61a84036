"""Running ``git http-backend`` (git's smart-HTTP CGI program) for one
request: its environment, the request body fed from a thread of its own,
its CGI headers read, its output passed through."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import User

from paas.applications.models import App
from paas.gitdeploy.git import git_popen
from paas.gitdeploy.repos import repo_path

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


def capped(stream: BinaryIO, already: int = 0) -> Iterator[bytes]:
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


def start_backend(
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


def pass_through(proc: subprocess.Popen[bytes]) -> Iterator[bytes]:
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read1(CHUNK):  # type: ignore[attr-defined]
            yield chunk
    finally:
        finish(proc)


def finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace").strip()
        if err:
            log.info("git http-backend: %s", err[:2000])
