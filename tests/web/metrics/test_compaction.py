"""Fine points fold into 5-minute points once their bucket is complete, and
each tier is dropped past its retention (1 h fine, 24 h coarse by default)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from paas.applications.services import app_create
from paas.metrics.models import MetricPoint, Tier
from paas.metrics.services import metrics_compact, metrics_downsample, metrics_purge
from tests.web.metrics.support import T0, fine

pytestmark = pytest.mark.django_db


@pytest.fixture
def app(alice):
    return app_create(user=alice, team=alice.personal_team, name="metered")


def coarse_points():
    return list(
        MetricPoint.objects.filter(tier=Tier.COARSE)
        .order_by("container", "time")
        .values_list("container", "time", "cpu_percent", "memory_bytes")
    )


def test_it_averages_a_complete_bucket_per_container(app):
    for s, cpu, memory in [(0, None, 100), (10, 20.0, 200), (290, 40.0, 600)]:
        fine(app, s, cpu=cpu, memory=memory)
    fine(app, 20, container="web2", cpu=5.0, memory=50)
    fine(app, 300, cpu=99.0, memory=9999)  # the next bucket: not complete yet

    made = metrics_downsample(now=T0 + timedelta(seconds=330))

    assert made == 2
    # A first sample's missing CPU share is left out of the mean, not counted as 0.
    assert coarse_points() == [("web1", T0, 30.0, 300), ("web2", T0, 5.0, 50)]


def test_a_bucket_is_folded_once(app):
    fine(app, 10, cpu=20.0)
    metrics_downsample(now=T0 + timedelta(seconds=330))
    fine(app, 20, cpu=80.0)  # a straggler after the fold changes nothing
    assert metrics_downsample(now=T0 + timedelta(seconds=340)) == 0
    assert coarse_points() == [("web1", T0, 20.0, 1000)]


def test_a_bucket_waits_for_collections_still_under_way(app):
    fine(app, 10, cpu=20.0)
    # 5 s past the bucket's end a collection that began before it may still store.
    assert metrics_downsample(now=T0 + timedelta(seconds=305)) == 0
    assert coarse_points() == []


def test_it_catches_up_on_every_missed_bucket(app):
    for minute in range(0, 30, 5):
        fine(app, minute * 60 + 10, cpu=float(minute))
    assert metrics_downsample(now=T0 + timedelta(minutes=31)) == 6
    assert [p[2] for p in coarse_points()] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


def test_it_drops_fine_points_after_an_hour_and_coarse_ones_after_a_day(app, settings):
    settings.PAAS_METRICS_FINE_RETENTION_S = 3600
    settings.PAAS_METRICS_RETENTION_HOURS = 24
    fine(app, 0)
    fine(app, 3000)
    metrics_downsample(now=T0 + timedelta(minutes=6))
    now = T0 + timedelta(seconds=3601)

    assert metrics_purge(now=now) == 1
    assert list(MetricPoint.objects.values_list("tier", "time").order_by("tier", "time")) == [
        (Tier.COARSE, T0),
        (Tier.FINE, T0 + timedelta(seconds=3000)),
    ]
    assert metrics_purge(now=T0 + timedelta(hours=24, seconds=1)) == 2
    assert MetricPoint.objects.count() == 0


def test_compaction_folds_before_it_purges(app):
    fine(app, 10, cpu=50.0)
    # Fine points over an hour old go, but only after their bucket was folded.
    made, deleted = metrics_compact(now=T0 + timedelta(hours=2))
    assert (made, deleted) == (1, 1)
    assert coarse_points() == [("web1", T0, 50.0, 1000)]
