"""A small world for the API's tests: alice's app with one of everything
(release, formation, instance on a host, domain, config var, build argument
and secret, a build, log lines), and token headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from paas.accounts.services import api_token_create
from paas.applications.models import App, ConfigVar, Release, ReleaseState
from paas.applications.releases import _ensure_formation
from paas.applications.services import app_create
from paas.builds.buildvars import build_arg_set, build_secret_set
from paas.builds.models import Build
from paas.hosts.models import Host, Instance
from paas.logs.lines import IngestLine
from paas.logs.models import LogSource
from paas.logs.services import logs_ingest
from paas.router.models import Domain
from tests.web.archives import HELLO, targz


def auth(user: Any) -> dict[str, str]:
    """Test-client headers with a new token of ``user``."""
    return {"HTTP_AUTHORIZATION": f"Bearer {api_token_create(user=user, name='t')[1]}"}


@dataclass
class World:
    app: App
    build: Build
    instance: Instance
    host: Host


def upload(client: Any, user: Any, app_name: str) -> Build:
    source = SimpleUploadedFile("src.tar.gz", targz(HELLO), content_type="application/gzip")
    client.post(f"/api/v1/apps/{app_name}/builds", {"source": source}, **auth(user))
    return Build.objects.filter(app__name=app_name).latest("created_at")


def make_world(client: Any, alice: Any, name: str = "alices-app") -> World:
    app = app_create(user=alice, team=alice.personal_team, name=name)
    build = upload(client, alice, name)
    release = Release.objects.create(
        app=app, number=1, image=f"reg/{name}@sha256:aa", cause="build",
        process_types={"web": "python3 app.py"}, state=ReleaseState.CURRENT,
    )  # fmt: skip
    _ensure_formation(app, {"web": "python3 app.py"})
    host, _ = Host.objects.get_or_create(
        name="test-host", defaults={"agent_url": "http://127.0.0.1:9", "token": "x"}
    )
    instance = Instance.objects.create(
        app=app, release=release, process_type="web", index=1, host=host,
        container_name=f"{name}-v1-web-1", memory_bytes=2**28,
    )  # fmt: skip
    Domain.objects.create(app=app, hostname=f"{name}.example.com")
    ConfigVar.objects.create(app=app, key="DB_URL", value="s3cret")
    build_arg_set(app=app, name="GREETING", value="hi")
    build_secret_set(app=app, name="npm_token", value="very-secret")
    now = datetime.now(UTC)
    logs_ingest(
        app_id=app.pk,
        lines=[
            IngestLine(LogSource.APP, now, f"line {i}", "stdout", "web", "web.1")
            for i in range(1, 6)
        ],
    )
    return World(app=app, build=build, instance=instance, host=host)
