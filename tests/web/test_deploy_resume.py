"""The sweep that carries on deploys whose worker died
(paas/hosts/resume.py) tells a dead deployer from a live one by the app's
deploy lock: a release deploying under a held lock is left alone. (The
kills themselves, with real workers: tests/web/test_fault_worker_deploy.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from paas.applications.models import Release, ReleaseState
from paas.applications.services import app_create
from paas.hosts.locks import app_lock
from paas.hosts.resume import deploys_resume_abandoned
from tests.web.fault_support import forget_messages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_stray_tasks(redis_url: str) -> Iterator[None]:
    yield
    forget_messages(redis_url)  # the sweep's sends: no worker of this test runs them


def test_a_deploy_under_a_held_lock_is_left_alone_and_a_lockless_one_sent_again(
    alice: Any, no_stray_tasks: None
) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="halfway")
    release = Release.objects.create(
        app=app, number=1, image="registry/none:v1", state=ReleaseState.DEPLOYING
    )
    with app_lock(app.pk):  # its deployer lives (and renews the lease)
        assert deploys_resume_abandoned().redeployed == []
    assert deploys_resume_abandoned().redeployed == [release.pk]  # nobody holds it: dead


def test_a_settled_app_needs_no_sweep(alice: Any, no_stray_tasks: None) -> None:
    app = app_create(user=alice, team=alice.personal_team, name="settled")
    Release.objects.create(app=app, number=1, image="registry/none:v1",
                           state=ReleaseState.CURRENT)  # fmt: skip
    Release.objects.create(app=app, number=2, image="registry/none:v2",
                           state=ReleaseState.PENDING)  # fmt: skip
    report = deploys_resume_abandoned()
    assert report.redeployed == [] and report.retiring == []
