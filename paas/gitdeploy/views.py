"""The git endpoint: /git/<app>.git/ for git's smart HTTP client.

Authentication is HTTP basic with an API token as the password (any user
name). Fetching needs the view role in the app's team, pushing the deploy
role; another team's app is 404 like a missing one. CSRF does not apply:
no cookie is trusted here.
"""

from __future__ import annotations

import base64
import binascii
import re

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from paas.accounts.services import api_token_authenticate
from paas.applications.selectors import app_for_user
from paas.core.errors import PaasError
from paas.gitdeploy.repos import repo_ensure
from paas.gitdeploy.smart_http import SERVICES, GitCall, git_serve
from paas.gitdeploy.streams import ThreadedStream, streaming_content
from paas.gitdeploy.webhooks import Outcome, webhook_receive

GIT_PROTOCOL_RE = re.compile(r"[A-Za-z0-9=:._-]{1,100}")
RPC_TYPES = {
    "git-upload-pack": "application/x-git-upload-pack-request",
    "git-receive-pack": "application/x-git-receive-pack-request",
}


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message.rstrip() + "\n", status=status, content_type="text/plain")


def _unauthorized(message: str) -> HttpResponse:
    response = _text(401, message)
    response["WWW-Authenticate"] = 'Basic realm="paas git", charset="UTF-8"'
    return response


def basic_auth_user(request: HttpRequest) -> User | None:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(raw.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, token = decoded.partition(":")
    if not sep or not token:
        return None
    return api_token_authenticate(raw=token)


def _service_of(request: HttpRequest, endpoint: str) -> str | None:
    if endpoint == "info/refs" and request.method == "GET":
        service = request.GET.get("service", "")
        return service if service in SERVICES else None
    if endpoint in SERVICES and request.method == "POST":
        if request.content_type != RPC_TYPES[endpoint]:
            return None
        return endpoint
    return None


def _call(request: HttpRequest, endpoint: str, service: str, user: User) -> GitCall:
    protocol = request.headers.get("Git-Protocol", "")
    return GitCall(
        method=request.method or "GET",
        endpoint=endpoint,
        service=service,
        body=request,  # type: ignore[arg-type]  # read as a stream, never whole
        content_type=request.META.get("CONTENT_TYPE", ""),
        content_encoding=request.headers.get("Content-Encoding", ""),
        git_protocol=protocol if GIT_PROTOCOL_RE.fullmatch(protocol) else "",
        user=user,
        remote_addr=request.META.get("REMOTE_ADDR", ""),
    )


@csrf_exempt
def git_endpoint(request: HttpRequest, name: str, endpoint: str) -> HttpResponseBase:
    service = _service_of(request, endpoint)
    if service is None:
        return _text(400, "Only git's smart HTTP protocol is served here.")
    user = basic_auth_user(request)
    if user is None:
        if request.headers.get("Authorization"):
            return _unauthorized("This token is unknown or revoked.")
        return _unauthorized("Use an API token as the password (any user name).")
    action = "deploy" if service == "git-receive-pack" else "view"
    try:
        app = app_for_user(user=user, name=name, action=action)
        response = git_serve(call=_call(request, endpoint, service, user), app=app,
                             repo=repo_ensure(app=app))  # fmt: skip
    except PaasError as exc:
        return _text(exc.status, exc.message)
    stream = ThreadedStream(response.body, name=f"git-{name}")
    content = streaming_content(request, stream)
    out = StreamingHttpResponse(content, status=response.status)
    for header, value in response.headers.items():
        out[header] = value
    return out


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, name: str) -> HttpResponse:
    """A push event from GitHub, GitLab or anything that signs like them."""
    try:
        result = webhook_receive(
            app_name=name,
            headers=dict(request.headers),
            body=request.body,
            remote=request.META.get("REMOTE_ADDR", ""),
        )
    except PaasError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    status = 202 if result.outcome == Outcome.QUEUED else 200
    return JsonResponse({"result": str(result.outcome), "message": result.message}, status=status)
