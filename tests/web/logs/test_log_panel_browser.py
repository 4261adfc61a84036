"""The app page's log panel in a real Chromium against a real daphne and
Redis: history, live lines, a filter, pause/resume and the download link."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from paas.applications.services import app_create
from paas.logs.models import LogSource
from paas.logs.services import logs_ingest
from tests.web.logs.support import line
from tests.web.test_browser import browser, daphne  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def ingest(app_id: int, *lines: Any) -> None:
    """In a thread: Playwright's loop makes this one async, and the ORM refuses it."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(logs_ingest, app_id=app_id, lines=list(lines)).result()


@pytest.fixture
def shop(alice):
    """Made before the browser starts (its event loop makes this thread async)."""
    return app_create(user=alice, team=alice.personal_team, name="shop")


def test_alice_watches_filters_pauses_and_downloads_her_apps_log(
    shop,
    daphne: str,  # noqa: F811
    browser: Browser,  # noqa: F811
):
    ingest(shop.pk, line("booting web", at=1),
           line("worker ready", at=2, process="worker", instance="worker.1"))  # fmt: skip
    page = browser.new_page()
    page.goto(f"{daphne}/apps/shop/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pw-123")
    page.click("button[type=submit]")
    log = page.locator("#app-log")
    expect(log).to_contain_text("app[web.1]: booting web")
    expect(log).to_contain_text("app[worker.1]: worker ready")
    expect(page.locator("#log-status")).to_have_text("Live")

    ingest(shop.pk, *[line("GET / 200", at=3, source=LogSource.ROUTER,
                                            process="router", instance="router")])  # fmt: skip
    expect(log).to_contain_text("router[router]: GET / 200")

    page.fill("#log-filters input[name=process]", "worker")
    page.click("#log-filters button[type=submit]")
    expect(log).to_contain_text("worker ready")
    expect(log).not_to_contain_text("booting web")
    expect(page.locator("#log-download")).to_have_attribute(
        "href", "/apps/shop/logs.txt?process=worker"
    )

    page.click("#log-pause")
    expect(page.locator("#log-status")).to_have_text("Paused")
    ingest(shop.pk, *[line("job 1 done", at=4, process="worker",
                                            instance="worker.1")])  # fmt: skip
    expect(page.locator("#log-status")).to_have_text("Paused (1 new line held)")
    expect(log).not_to_contain_text("job 1 done")
    page.click("#log-pause")
    expect(log).to_contain_text("job 1 done")
    if os.environ.get("PAAS_SCREENSHOTS"):
        page.screenshot(path=os.environ["PAAS_SCREENSHOTS"] + "/app-logs.png", full_page=True)
