"""The app page draws its metrics in a real Chromium, with the vendored
uPlot served by the platform itself (no CDN), and says so when a span has
no measurement yet."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from paas.applications.services import app_create
from paas.metrics.models import MetricPoint, Tier
from paas.metrics.services import bucket
from tests.web.test_browser import browser, daphne

__all__ = ["browser", "daphne"]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def charted(alice):
    """Alice's app with half a minute of points (made before the browser
    starts: Playwright's loop forbids the ORM in this thread afterwards)."""
    app = app_create(user=alice, team=alice.personal_team, name="charted")
    now = bucket(timezone.now(), 10)
    for back, cpu in [(30, None), (20, 12.5), (10, 40.0)]:
        time = now - timedelta(seconds=back)
        MetricPoint.objects.create(
            app=app, container="charted.v1.web.1", instance="web.1", release=1,
            tier=Tier.FINE, time=time, sampled_at=time, cpu_ns=back, cpu_percent=cpu,
            memory_bytes=48 * 2**20, memory_limit_bytes=256 * 2**20,
        )  # fmt: skip
    return app


def test_alice_sees_cpu_and_memory_charts_of_her_instance(charted, daphne, browser):
    page = browser.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(daphne) else outside.append(r.url))
    page.goto(f"{daphne}/apps/charted/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pw-123")
    page.click("button[type=submit]")

    panel = page.locator("#app-metrics")
    expect(panel.locator("#metrics-cpu canvas")).to_be_visible(timeout=15_000)
    expect(panel.locator("#metrics-memory canvas")).to_be_visible()
    expect(panel.locator("#metrics-cpu")).to_contain_text("web.1 (v1)")  # the legend
    expect(panel.locator("#metrics-memory")).to_contain_text("limit")  # dashed, 256 MiB
    if os.environ.get("PAAS_SCREENSHOTS"):
        panel.screenshot(path=os.environ["PAAS_SCREENSHOTS"] + "/metrics.png")

    panel.get_by_role("button", name="Last 24 hours").click()
    expect(page.locator("#metrics-status")).to_contain_text("No measurements yet")
    expect(panel.locator("canvas")).to_have_count(0)
    assert outside == []
