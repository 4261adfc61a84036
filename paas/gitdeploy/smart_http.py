"""git's smart HTTP protocol, served by git's own ``git http-backend`` (a
CGI program) run with an argv list and a clean environment.

The repository is chosen by the platform (the app's id), never from the
URL: http-backend gets ``GIT_PROJECT_ROOT`` and a ``PATH_INFO`` we build.
Only the three smart endpoints exist (no dumb HTTP file access).

Fetches pass straight through (:mod:`paas.gitdeploy.backend`); a push is
held at its end while its deploy runs (:mod:`paas.gitdeploy.receive`).
"""

from __future__ import annotations

from pathlib import Path

from paas.applications.models import App
from paas.gitdeploy.backend import (
    SERVICES,
    GitCall,
    GitResponse,
    capped,
    pass_through,
    start_backend,
)
from paas.gitdeploy.receive import receive_pack

__all__ = ["SERVICES", "GitCall", "git_serve"]


def git_serve(*, call: GitCall, app: App, repo: Path) -> GitResponse:
    """Answer one smart-HTTP request for ``app``'s repository; the caller
    has authenticated the user and checked their role for ``call.service``."""
    if call.endpoint == "git-receive-pack":
        return receive_pack(call, app, repo)
    proc, status, headers = start_backend(call, app, repo, capped(call.body))
    return GitResponse(status, headers, lambda: pass_through(proc))
