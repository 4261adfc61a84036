"""Helpers for the page tests: what a page offers, read from its HTML."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.utils import timezone

from paas.applications.models import App, Release, ReleaseState
from paas.applications.releases import _ensure_formation
from paas.applications.services import app_create
from paas.hosts.models import Host, HostState, Instance, InstanceState

GiB = 1024**3
FORM = re.compile(r"<form\b[^>]*>", re.S)
ACTION = re.compile(r'action="([^"]*)"')


def post_forms(html: str) -> list[str]:
    """The action of every POST form on the page ("" for the page itself),
    except signing out."""
    actions = []
    for tag in FORM.findall(html):
        if 'method="post"' not in tag:
            continue
        found = ACTION.search(tag)
        action = found.group(1) if found else ""
        if action != "/logout/":
            actions.append(action)
    return actions


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def host(name: str = "host-1", memory: int = 4 * GiB, state: str = HostState.READY) -> Host:
    return Host.objects.create(
        name=name, agent_url="http://127.0.0.1:7999", memory_bytes=memory, cpus=2,
        state=state, last_heartbeat_at=timezone.now() - timedelta(seconds=4),
    )  # fmt: skip


def deployed_app(owner: Any, name: str, on: Host, states: list[str]) -> App:
    """An app whose v1 is current, with one web instance per state on ``on``."""
    app = app_create(user=owner, team=owner.personal_team, name=name)
    release = Release.objects.create(
        app=app, number=1, image=f"reg/{name}@sha256:aa", cause="build",
        state=ReleaseState.CURRENT, description="Build #1", deployed_at=timezone.now(),
    )  # fmt: skip
    _ensure_formation(app, {})
    for index, state in enumerate(states, start=1):
        Instance.objects.create(
            app=app, release=release, process_type="web", index=index, host=on,
            container_name=f"{name}.v1.web.{index}", memory_bytes=GiB,
            state=InstanceState(state),
        )  # fmt: skip
    return app
