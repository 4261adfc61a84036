"""Deleting an app: everything it had goes.

The request (owner only, confirmed by typing the name) queues the work; the
worker stops and removes the app's containers on every host it can reach,
deletes the app's rows (releases, instances, formation, config, domains
and their certificates, builds and their logs cascade), switches the router
away from it and deletes its images from the registry. A container on a
host that is down is left behind on purpose: once the host answers again,
the reconcile finds a container labelled for an app no instance claims and
removes it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from django.contrib.auth.models import User
from django.db import transaction

from paas.accounts.services import require_role
from paas.applications.audit import audit_record
from paas.applications.models import App
from paas.core.errors import PaasError, ValidationFailed
from paas.gitdeploy.repos import repo_delete, repo_path
from paas.hosts.locks import app_lock
from paas.hosts.models import Instance
from paas.hosts.routing import routes_apply
from paas.hosts.services import host_client
from paas.router.services import router_lock

log = logging.getLogger(__name__)


def app_delete_request(*, user: User, app: App, confirm: str) -> None:
    require_role(user=user, team_id=app.team_id, action="manage")
    if confirm != app.name:
        raise ValidationFailed(
            f"Type the app's name ({app.name}) to confirm its deletion.", field="confirm"
        )
    audit_record(actor=user, app=None, team=app.team, action="app.delete", target=app.name)
    from paas.hosts.tasks import app_delete_task

    app_id = app.pk
    transaction.on_commit(lambda: app_delete_task.delay(app_id))


def app_delete(*, app_id: int) -> bool:
    app = App.objects.filter(pk=app_id).first()
    if app is None:
        return False  # done already
    name = app.name
    with app_lock(app_id):
        containers = [
            (i.host, i.container_name)
            for i in Instance.objects.filter(app=app).select_related("host")
        ]
        archives = [Path(p) for p in app.builds.values_list("archive_path", flat=True) if p]
        git_repo = repo_path(app=app)
        _delete_images(name)
        # The router lets go in the transaction that deletes the rows: who
        # sees the app gone also finds it gone from the router (the lock
        # outlives the commit, so no concurrent apply routes the app back).
        with router_lock(), transaction.atomic():
            Instance.objects.filter(app=app).delete()
            app.delete()
            routes_apply()
        for host, container in containers:
            # A host that does not answer keeps a stray the reconcile removes later.
            with contextlib.suppress(PaasError):
                host_client(host).remove(container, force=True)
        for archive in archives:  # paths the platform chose, under UPLOAD_DIR
            archive.unlink(missing_ok=True)
        repo_delete(path=git_repo)
    return True


def _delete_images(repo: str) -> None:
    from paas.builds.engine_adapter import registry_settings

    try:
        with registry_settings().client() as client:
            digests = {client.get_manifest(repo, tag)[1] for tag in client.list_tags(repo)}
            for digest in digests:
                client.delete_manifest(repo, digest)
    except Exception as exc:  # the registry is best effort here; the app is gone
        log.warning("could not delete the images of %s: %s", repo, exc)
