"""One-off commands (``paas run -- CMD``): a new container of the current
release runs the command to its end; the answer carries its output and exit
code. The request waits (at most PAAS_RUN_TIMEOUT_S)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from paas.accounts.types import signed_in
from paas.api.responses import answers
from paas.api.schemas import PathName, RunIn, RunOut
from paas.applications.selectors import app_for_user
from paas.hosts.oneoff import oneoff_run

router = Router(tags=["deploys"])


@router.post("/apps/{name}/run", response=answers(200, RunOut))
def app_run(request: HttpRequest, name: PathName, body: RunIn) -> dict[str, Any]:
    """Run a command once in a new container of the current release (with
    its config vars), wait for its end and answer its output and exit code."""
    app = app_for_user(user=request.user, name=name, action="deploy")
    ended = oneoff_run(user=signed_in(request), app=app, command=body.command)
    return {
        "exit_code": ended.exit_code,
        "oom_killed": ended.oom_killed,
        "timed_out": ended.timed_out,
        "output": ended.output,
    }
