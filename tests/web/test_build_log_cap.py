"""A build's stored log is capped: what a tenant prints cannot fill the
database. Past the cap: one "log truncated" line, then only the outcome."""

from __future__ import annotations

import pytest

from paas.applications.services import app_create
from paas.builds.models import Build, BuildLogLine
from paas.builds.services import BuildLogWriter

pytestmark = pytest.mark.django_db


def a_build(user) -> Build:
    app = app_create(user=user, team=user.personal_team, name="loud")
    return Build.objects.create(app=app, number=1, archive_name="a.tgz", archive_path="/x")


def stored(build: Build) -> list[str]:
    return list(BuildLogLine.objects.filter(build=build).values_list("text", flat=True))


def test_past_the_line_cap_one_truncated_line_then_only_the_outcome(alice, settings):
    settings.PAAS_BUILD_LOG_MAX_LINES = 5
    build = a_build(alice)
    out = BuildLogWriter(build.pk)
    for i in range(50):
        out(f"line {i}")
    out.final("-----> Build succeeded")
    lines = stored(build)
    assert lines[:5] == [f"line {i}" for i in range(5)]
    assert lines[5].startswith("!!     log truncated: this build printed more than 5 lines")
    assert lines[6:] == ["-----> Build succeeded"]


def test_past_the_byte_cap_the_same(alice, settings):
    settings.PAAS_BUILD_LOG_MAX_BYTES = 10_000
    build = a_build(alice)
    out = BuildLogWriter(build.pk)
    out("\n".join("x" * 1000 for _ in range(30)))
    lines = stored(build)
    assert lines[:10] == ["x" * 1000] * 10
    assert "log truncated" in lines[10] and "10000 bytes" in lines[10]
    assert len(lines) == 11
