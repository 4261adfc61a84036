"""Live events: instance, release, host and deploy-progress changes, sent to
the pages that show them so they update rows in place (static/live.js).

Services call these functions right after they write. Each one waits for
the transaction to commit (``on_commit``; at once outside a transaction),
then reads the rows it names and sends a small snapshot to a Channels
group: ``app_<id>_events`` for an app's people, ``hosts_events`` for
platform admins (``paas.logs.consumers.LiveEventsConsumer`` checks who may
join). Reading after the commit means an event never shows what a rollback
undid, and two events racing each other both carry the newest state, so a
page that applies them in any order ends up right. Events are best effort:
the database is the truth, and a page that missed one is right again at the
next event or reload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.urls import reverse

from paas.applications.models import App, Release
from paas.core.events import group_send
from paas.hosts.models import DesiredState, Host, HostState, Instance, InstanceState

log = logging.getLogger(__name__)
HOSTS_GROUP = "hosts_events"
EVENT_TYPE = "live.event"  # the consumer's handler: live_event
RELEASES_SHOWN = 20  # as many as the app page lists
BUILDS_SHOWN = 50


def app_events_group(app_id: int) -> str:
    return f"app_{app_id}_events"


def _on_commit(publish: Callable[[], None]) -> None:
    """Run ``publish`` once the transaction commits, never failing the
    service that changed the rows: the page is only a view on them."""

    def run() -> None:
        try:
            publish()
        except Exception:
            log.exception("could not publish a live event")

    transaction.on_commit(run)


def _send(group: str, event: dict[str, Any]) -> None:
    group_send(group, {"type": EVENT_TYPE, "event": event})


def instances_changed(*, app_id: int, instance_ids: Iterable[int]) -> None:
    """Rows of these instances (gone ones as ``gone``), then the app's summary."""
    ids = sorted(set(instance_ids))
    if ids:
        _on_commit(lambda: _publish_instances(app_id, ids))


def instance_changed(instance: Instance) -> None:
    instances_changed(app_id=instance.app_id, instance_ids=[instance.pk])


def release_changed(*, app_id: int) -> None:
    """The app's releases (their states move together: one current, the
    rest retired), then the app's summary."""
    _on_commit(lambda: _publish_releases(app_id))


def deploy_progress(*, app_id: int, release: int, step: str, text: str) -> None:
    """A step of a deploy: ``start``, ``starting``, ``health``, ``healthy``,
    ``router``, ``live`` or ``failed``, with a sentence for people."""
    event = {"kind": "deploy", "release": release, "step": step, "text": text}
    _on_commit(lambda: _send(app_events_group(app_id), event))


def build_changed(*, app_id: int, build_id: str) -> None:
    """A build's row on the app page (its log and steps stream on its own page)."""
    _on_commit(lambda: _publish_build(app_id, build_id))


def host_changed(*, host_id: int) -> None:
    _on_commit(lambda: _publish_host(host_id))


def _publish_instances(app_id: int, ids: list[int]) -> None:
    hosts = set()
    for event in instance_events(ids):
        _send(app_events_group(app_id), event)
        _send(HOSTS_GROUP, event)
        if not event["gone"]:
            hosts.add(event["host"])
    _publish_app(app_id)
    for host in Host.objects.filter(name__in=hosts):
        _send(HOSTS_GROUP, host_event(host))  # its instance counts changed


def _publish_releases(app_id: int) -> None:
    for event in release_events(app_id):
        _send(app_events_group(app_id), event)
    _publish_app(app_id)


def _publish_build(app_id: int, build_id: str) -> None:
    from paas.builds.models import Build

    build = Build.objects.filter(pk=build_id).select_related("app").first()
    if build is not None:
        _send(app_events_group(app_id), build_event(build))


def build_event(build: Any) -> dict[str, Any]:
    return {
        "kind": "build",
        "id": str(build.pk),
        "number": build.number,
        "state": build.state,
        "source": build.archive_name,
        "url": reverse("build-detail", args=[build.app.name, build.pk]),
        "created_at": build.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _publish_app(app_id: int) -> None:
    event = app_event(app_id)
    if event is not None:
        _send(app_events_group(app_id), event)


def _publish_host(host_id: int) -> None:
    host = Host.objects.filter(pk=host_id).first()
    if host is not None:
        _send(HOSTS_GROUP, host_event(host))


def app_snapshot(app_id: int) -> list[dict[str, Any]]:
    """Every event of the app's page as it is now: what a page that just
    subscribed is sent, so a change made between its render and its
    subscription is not missed."""
    ids = list(Instance.objects.filter(app_id=app_id).values_list("pk", flat=True))
    summary = app_event(app_id)
    return [
        *build_events(app_id),
        *instance_events(ids),
        *release_events(app_id),
        *([summary] if summary else []),
    ]


def build_events(app_id: int) -> list[dict[str, Any]]:
    """The builds the app page lists (its newest), oldest first."""
    from paas.builds.models import Build

    newest = Build.objects.filter(app_id=app_id).select_related("app").order_by("-number")
    return [build_event(b) for b in reversed(newest[:BUILDS_SHOWN])]


def hosts_snapshot() -> list[dict[str, Any]]:
    return [host_event(h) for h in Host.objects.exclude(state=HostState.REMOVED)]


def instance_events(ids: list[int]) -> list[dict[str, Any]]:
    """A row per instance (``gone`` for one that no longer exists)."""
    from paas.applications.views_data import instance_json

    found = {
        i.pk: i
        for i in Instance.objects.filter(pk__in=ids).select_related("release", "host", "app")
    }
    events = []
    for pk in ids:
        instance = found.get(pk)
        event: dict[str, Any] = {"kind": "instance", "id": pk, "gone": instance is None}
        if instance is not None:
            event.update(instance_json(instance), app=instance.app.name)
        events.append(event)
    return events


def release_events(app_id: int) -> list[dict[str, Any]]:
    """The releases the app page lists (its newest), oldest first."""
    newest = Release.objects.filter(app_id=app_id).order_by("-number")[:RELEASES_SHOWN]
    return [release_event(r) for r in reversed(newest)]


def release_event(release: Release) -> dict[str, Any]:
    return {
        "kind": "release",
        "number": release.number,
        "label": release.label,
        "state": release.state,
        "state_label": release.get_state_display(),
        "error": release.error,
        "description": release.description,
        "created_at": release.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    }


def app_event(app_id: int) -> dict[str, Any] | None:
    """The dashboard's line for the app: status and instance counts."""
    from paas.hosts.selectors import app_status, summaries_of

    app = summaries_of(App.objects.filter(pk=app_id)).first()
    if app is None:
        return None
    deployed = app.last_deploy_at  # type: ignore[attr-defined]
    return {
        "kind": "app",
        "name": app.name,
        "status": app_status(app),
        "current_release": app.current_release,  # type: ignore[attr-defined]
        "wanted": app.wanted,  # type: ignore[attr-defined]
        "running": app.running,  # type: ignore[attr-defined]
        "crashed": app.crashed,  # type: ignore[attr-defined]
        "last_deploy_at": deployed.isoformat() if deployed else None,
    }


def host_event(host: Host) -> dict[str, Any]:
    placed = Instance.objects.filter(host=host, desired=DesiredState.RUNNING)
    return {
        "instances": placed.count(),
        "running": placed.filter(state=InstanceState.RUNNING).count(),
        "kind": "host",
        "name": host.name,
        "state": host.state,
        "state_label": host.get_state_display(),
        "last_error": host.last_error,
        "heartbeat_at": host.last_heartbeat_at.isoformat() if host.last_heartbeat_at else None,
    }
