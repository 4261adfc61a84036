"""Push webhooks: GitHub-style (``X-Hub-Signature-256``: an HMAC-SHA256 of
the body with the app's secret) and GitLab-style (``X-Gitlab-Token``: the
secret itself), compared in constant time.

An accepted push to the deploy branch is recorded as a delivery; the unique
(app, delivery id) and (app, commit) constraints make a redelivery, or a
second event for the same commit, a no-op. The fetch and build run in a
Celery task that takes the delivery's id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from paas.applications.audit import audit_record
from paas.applications.models import App, AuditResult
from paas.core.errors import NotFound, PaasError, PermissionDenied, ValidationFailed
from paas.gitdeploy.deploys import build_from_commit
from paas.gitdeploy.fetch import fetched_commit
from paas.gitdeploy.models import GitSettings, WebhookDelivery
from paas.gitdeploy.refs import SHA_RE, ZERO_SHA
from paas.gitdeploy.services import deploy_branch_of, webhook_secret_of

log = logging.getLogger(__name__)
MAX_BODY = 5 * 1024 * 1024


class Outcome(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    PONG = "pong"


@dataclass(frozen=True)
class WebhookResult:
    outcome: Outcome
    message: str


def _headers_lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _signature_ok(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    github = headers.get("x-hub-signature-256", "")
    if github:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(github.encode(), expected.encode())
    gitlab = headers.get("x-gitlab-token", "")
    if gitlab:
        return hmac.compare_digest(gitlab.encode(), secret.encode())
    return False


def _refuse(app: App, remote: str, why: str) -> PermissionDenied:
    log.warning("webhook for %s refused from %s: %s", app.name, remote, why)
    audit_record(actor=None, app=app, action="webhook", result=AuditResult.REFUSED,
                 detail=f"{why} (from {remote})")  # fmt: skip
    return PermissionDenied("Bad signature or token.")


def _push_fields(body: bytes) -> tuple[str, str]:
    try:
        payload: Any = json.loads(body)
    except ValueError:
        raise ValidationFailed("The body is not JSON.") from None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    after = payload.get("after") if isinstance(payload, dict) else None
    if not isinstance(ref, str) or not isinstance(after, str):
        raise ValidationFailed("A push event has 'ref' and 'after'.")
    return ref, after.lower()


def webhook_receive(
    *, app_name: str, headers: dict[str, str], body: bytes, remote: str = ""
) -> WebhookResult:
    """Check and record one webhook delivery; queue its deploy."""
    app = App.objects.filter(name=app_name).first()
    row = GitSettings.objects.filter(app=app).first() if app else None
    if app is None or row is None or not row.webhook_secret_sealed:
        raise NotFound("No webhook here.")
    h = _headers_lower(headers)
    if len(body) > MAX_BODY:
        raise ValidationFailed("The event is too large.")
    if not _signature_ok(webhook_secret_of(row=row), body, h):
        raise _refuse(app, remote, "bad signature or token")
    event = h.get("x-github-event") or h.get("x-gitlab-event", "")
    if event == "ping":
        return WebhookResult(Outcome.PONG, "pong")
    if event not in ("push", "Push Hook"):
        return WebhookResult(Outcome.IGNORED, f"Ignored: not a push event ({event[:50]!r}).")
    ref, after = _push_fields(body)
    branch = deploy_branch_of(app=app)
    if ref != f"refs/heads/{branch}" or after == ZERO_SHA:
        return WebhookResult(Outcome.IGNORED, f"Ignored: not a push to {branch}.")
    if not SHA_RE.fullmatch(after):
        raise ValidationFailed("'after' is not a commit id.")
    if not row.repo_url:
        raise ValidationFailed("Set the app's repository URL first: there is nothing to fetch.")
    delivery_id = (h.get("x-github-delivery") or h.get("x-gitlab-event-uuid") or after)[:100]
    return _record(app, delivery_id, after, ref)


def _record(app: App, delivery_id: str, sha: str, ref: str) -> WebhookResult:
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                app=app, delivery_id=delivery_id, commit=sha, ref=ref
            )
            from paas.gitdeploy.tasks import webhook_deploy

            transaction.on_commit(lambda: webhook_deploy.delay(delivery.pk))
    except IntegrityError:
        return WebhookResult(Outcome.DUPLICATE, f"Already delivered: {sha[:12]} deploys once.")
    audit_record(actor=None, app=app, action="webhook", target=sha[:12], detail=ref)
    return WebhookResult(Outcome.QUEUED, f"Deploying {sha[:12]}.")


def _claim(delivery_id: int) -> bool:
    """Only one worker fetches a delivery; one that died releases it after
    the fetch timeout (the task is redelivered then)."""
    stale = timezone.now() - timedelta(seconds=settings.PAAS_GIT_FETCH_TIMEOUT_S * 2)
    fresh = WebhookDelivery.objects.filter(pk=delivery_id, build=None, error="")
    won = fresh.filter(claimed_at=None).update(claimed_at=timezone.now())
    if not won:
        won = fresh.filter(claimed_at__lt=stale).update(claimed_at=timezone.now())
    return bool(won)


def webhook_deploy(*, delivery_id: int) -> None:
    """Fetch the delivery's commit from the app's repository and build it
    (the build becomes a release as an upload's does). Safe to run twice."""
    if not _claim(delivery_id):
        return
    delivery = WebhookDelivery.objects.select_related("app").get(pk=delivery_id)
    app = delivery.app
    try:
        row = GitSettings.objects.get(app=app)
        branch = delivery.ref.removeprefix("refs/heads/")
        with fetched_commit(row=row, branch=branch, sha=delivery.commit) as repo:
            build = build_from_commit(app=app, user=None, repo=repo, sha=delivery.commit)
    except PaasError as exc:
        WebhookDelivery.objects.filter(pk=delivery_id).update(error=exc.message[:2000])
        audit_record(actor=None, app=app, action="webhook.deploy", target=delivery.commit[:12],
                     result=AuditResult.FAILED, detail=exc.message[:500])  # fmt: skip
        return
    WebhookDelivery.objects.filter(pk=delivery_id).update(build=build)
