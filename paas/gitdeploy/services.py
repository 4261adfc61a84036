"""An app's git settings: the deploy branch, the repository a webhook
fetches from, its credentials and ssh host keys, and the webhook's secret."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.contrib.auth.models import User
from django.db import transaction

from paas.accounts.services import require_role
from paas.applications.audit import audit_record
from paas.applications.models import App
from paas.builds.secretbox import seal, unseal
from paas.core.errors import ValidationFailed
from paas.gitdeploy.hostkeys import HostKeyOrigin, host_keys_validate
from paas.gitdeploy.models import DEFAULT_DEPLOY_BRANCH, GitSettings
from paas.gitdeploy.refs import branch_validate

HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]")
# scp-like ssh address: user@host:path (what GitHub and GitLab show).
SCP_RE = re.compile(r"(?P<user>[A-Za-z0-9._-]{1,64})@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252}):"
                    r"(?P<path>[A-Za-z0-9._~/-]{1,400})")  # fmt: skip
PATH_RE = re.compile(r"/[A-Za-z0-9._~/%+-]{1,400}")
MAX_CREDENTIALS = 16 * 1024


def git_settings_of(*, app: App) -> GitSettings:
    """The app's settings (the defaults, unsaved, when none were set)."""
    found = GitSettings.objects.filter(app=app).first()
    return found or GitSettings(app=app)


def deploy_branch_of(*, app: App) -> str:
    return git_settings_of(app=app).deploy_branch or DEFAULT_DEPLOY_BRANCH


def repo_url_validate(url: str) -> str:
    """An https or ssh repository address, or a clear error. Never a local
    path, file://, ext:: or any other transport git knows: git would run
    programs or read the platform's own files for those."""
    url = url.strip()
    bad = ValidationFailed(
        "Give the repository as https://host/path or ssh://user@host/path (or user@host:path); "
        "local paths, file://, ext:: and other transports are refused.",
        field="repo_url",
    )
    if not url or len(url) > 500 or any(c.isspace() or ord(c) < 32 for c in url):
        raise bad
    if "::" in url or url.startswith(("-", "/", ".", "~")):
        raise bad
    if SCP_RE.fullmatch(url):
        if SCP_RE.fullmatch(url)["path"].startswith("-"):  # type: ignore[index]
            raise bad
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("https", "ssh") or parts.query or parts.fragment:
        raise bad
    host = parts.netloc.rpartition("@")[2].rsplit(":", 1)[0] if parts.netloc else ""
    if not HOST_RE.fullmatch(host) or not PATH_RE.fullmatch(parts.path):
        raise bad
    if parts.scheme == "https" and (parts.username or parts.password):
        raise ValidationFailed(
            "Put no credentials in the URL: enter them as the repository's credentials "
            "(they are stored encrypted and never shown).",
            field="repo_url",
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad from None
    return url


@dataclass(frozen=True)
class SettingsChange:
    settings: GitSettings
    new_webhook_secret: str | None  # shown once when the platform made it


@transaction.atomic
def git_settings_update(
    *,
    user: User,
    app: App,
    deploy_branch: str | None = None,
    repo_url: str | None = None,
    repo_credentials: str | None = None,
    ssh_host_keys: str | None = None,
    webhook_secret: str | None = None,
    new_webhook_secret: bool = False,
) -> SettingsChange:
    """Change what is given (None leaves a setting as it is; an empty
    repository URL or credentials clears them)."""
    require_role(user=user, team_id=app.team_id, action="deploy")
    current = GitSettings.objects.select_for_update().filter(app=app).first()
    row = current or GitSettings(app=app)
    changed: list[str] = []
    if deploy_branch is not None:
        row.deploy_branch = branch_validate(deploy_branch)
        changed.append(f"deploy branch {row.deploy_branch}")
    if repo_url is not None:
        url = repo_url_validate(repo_url) if repo_url.strip() else ""
        if url != row.repo_url and row.ssh_host_keys_origin == HostKeyOrigin.FIRST_USE:
            # Keys trusted on first use were another host's: trust anew.
            row.ssh_host_keys, row.ssh_host_keys_origin = "", ""
        row.repo_url = url
        changed.append("repository URL")
    if ssh_host_keys is not None:
        keys = host_keys_validate(ssh_host_keys)
        row.ssh_host_keys = "\n".join(keys)
        row.ssh_host_keys_origin = HostKeyOrigin.OPERATOR if keys else ""
        changed.append("ssh host keys" if keys else "ssh host keys cleared (trust on first use)")
    if repo_credentials is not None:
        row.repo_credentials_sealed = _seal_credentials(repo_credentials)
        changed.append("repository credentials")
    made = None
    if new_webhook_secret:
        webhook_secret = made = secrets.token_urlsafe(32)
    if webhook_secret is not None:
        row.webhook_secret_sealed = _seal_secret(webhook_secret)
        changed.append("webhook secret")
    row.save()
    audit_record(actor=user, app=app, action="git.settings", detail=", ".join(changed))
    return SettingsChange(row, made)


def _seal_credentials(value: str) -> str:
    if not value.strip():
        return ""
    if len(value) > MAX_CREDENTIALS or "\x00" in value:
        raise ValidationFailed("Credentials must be text of at most 16 KiB.", field="credentials")
    return seal(value)


def _seal_secret(value: str) -> str:
    if not value:
        return ""
    if len(value) < 16 or len(value) > 200 or not value.isprintable():
        raise ValidationFailed(
            "A webhook secret must be 16 to 200 printable characters.", field="webhook_secret"
        )
    return seal(value)


def webhook_secret_of(*, row: GitSettings) -> str:
    if not row.webhook_secret_sealed:
        return ""
    return unseal(row.webhook_secret_sealed, name="webhook secret")


def ssh_host_keys_record_first_use(*, row: GitSettings, keys: list[str]) -> bool:
    """Pin the keys the first fetch accepted, unless keys were pinned meanwhile
    (a conditional update: of two first fetches, one records)."""
    if not keys:
        return False
    recorded = GitSettings.objects.filter(pk=row.pk, ssh_host_keys="").update(
        ssh_host_keys="\n".join(keys), ssh_host_keys_origin=HostKeyOrigin.FIRST_USE
    )
    if recorded:
        detail = f"ssh host keys of the repository recorded at first use: {keys}"
        audit_record(actor=None, app=row.app, action="git.host_keys", detail=detail)
    return bool(recorded)


def repo_credentials_of(*, row: GitSettings) -> str:
    if not row.repo_credentials_sealed:
        return ""
    return unseal(row.repo_credentials_sealed, name="repository credentials")
