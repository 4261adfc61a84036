"""Pruning old image versions never deletes what a kept release runs:
PAAS_KEEP_IMAGES counts releases, and the serving one is always kept."""

from __future__ import annotations

import pytest

from paas.applications.models import Release, ReleaseCause, ReleaseState
from paas.applications.services import app_create
from paas.builds.selectors import images_in_use

pytestmark = pytest.mark.django_db


def _digest(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


def _release(app, number: int, image_n: int, state=ReleaseState.RETIRED) -> None:
    Release.objects.create(
        app=app,
        number=number,
        image=f"127.0.0.1:5000/{app.name}@{_digest(image_n)}",
        cause=ReleaseCause.BUILD,
        state=state,
    )


def test_it_protects_the_newest_kept_releases_and_the_current_one(alice, settings):
    settings.PAAS_KEEP_IMAGES = 2
    app = app_create(user=alice, team=alice.personal_team, name="kept")
    _release(app, 1, 1, ReleaseState.CURRENT)  # rolled back to: still serving
    _release(app, 2, 2)
    _release(app, 3, 3)
    _release(app, 4, 3)  # a config change: same image as v3
    assert images_in_use(app_id=app.pk) == {_digest(1), _digest(3)}


def test_keep_zero_protects_every_release(alice, settings):
    settings.PAAS_KEEP_IMAGES = 0
    app = app_create(user=alice, team=alice.personal_team, name="keep-all")
    for n in (1, 2, 3):
        _release(app, n, n)
    assert images_in_use(app_id=app.pk) == {_digest(1), _digest(2), _digest(3)}


def test_another_apps_releases_are_not_counted(alice, settings):
    settings.PAAS_KEEP_IMAGES = 5
    mine = app_create(user=alice, team=alice.personal_team, name="mine")
    other = app_create(user=alice, team=alice.personal_team, name="other")
    _release(other, 1, 9)
    assert images_in_use(app_id=mine.pk) == frozenset()
