"""The app's "Deploy with git" page: the remote to push to, the deploy
branch, the repository, credentials and ssh host keys a webhook fetches with, and the
webhook's URL and secret (a secret made by the platform is shown once)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from paas.accounts.services import ROLE_CAN, role_in_team
from paas.accounts.types import signed_in
from paas.applications.models import App
from paas.applications.selectors import app_for_user
from paas.core.errors import NotFound, PaasError
from paas.gitdeploy.models import WebhookDelivery
from paas.gitdeploy.services import git_settings_of, git_settings_update


@login_required
@sensitive_post_parameters("repo_credentials", "webhook_secret")
@require_http_methods(["GET", "POST"])
def app_git(request: HttpRequest, name: str) -> HttpResponse:
    try:
        app = app_for_user(user=request.user, name=name)
    except NotFound as exc:
        raise Http404(exc.message) from None
    new_secret = None
    if request.method == "POST":
        try:
            message, new_secret = _save(request, app)
            messages.success(request, message)
        except PaasError as exc:
            messages.error(request, exc.message)
        if new_secret is None:
            return redirect("app-git", name=app.name)
    # A secret the platform made is shown in this one answer, never stored
    # where it could be shown again (not in a flash message's cookie).
    role = role_in_team(user=request.user, team_id=app.team_id)
    row = git_settings_of(app=app)
    panel = settings.PANEL_URL.rstrip("/")
    context = {
        "app": app,
        "row": row,
        "can_deploy": role in ROLE_CAN["deploy"],
        "remote_url": f"{panel}/git/{app.name}.git",
        "webhook_url": f"{panel}/hooks/git/{app.name}",
        "deliveries": WebhookDelivery.objects.filter(app=app).select_related("build")[:10],
        "new_secret": new_secret,
    }
    return render(request, "gitdeploy/app_git.html", context)


def _save(request: HttpRequest, app: App) -> tuple[str, str | None]:
    post, user = request.POST, signed_in(request)
    form = post.get("form")
    if form == "branch":
        git_settings_update(user=user, app=app, deploy_branch=post.get("deploy_branch", ""))
        return "Saved the deploy branch.", None
    if form == "repository":
        credentials = post.get("repo_credentials", "")
        git_settings_update(
            user=user,
            app=app,
            repo_url=post.get("repo_url", ""),
            # Blank keeps the stored credentials unless asked to clear them.
            repo_credentials="" if "clear_credentials" in post else (credentials or None),
        )
        return "Saved the repository.", None
    if form == "hostkeys":
        keys = post.get("ssh_host_keys", "")
        git_settings_update(user=user, app=app, ssh_host_keys=keys)
        if not keys.strip():
            return "Cleared the ssh host keys: the next fetch pins the key it sees.", None
        return "Saved the ssh host keys.", None
    if form == "webhook":
        secret = post.get("webhook_secret", "")
        change = git_settings_update(
            user=user, app=app, webhook_secret=secret or None, new_webhook_secret=not secret
        )
        if change.new_webhook_secret:
            return "Made a new webhook secret.", change.new_webhook_secret
        return "Saved the webhook secret.", None
    raise PaasError("Unknown form.")
