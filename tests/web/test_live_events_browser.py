"""Live events in a real Chromium against a real daphne and Redis: a state
change made through a service shows up on the open app page, dashboard and
hosts page, without a reload."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from playwright.sync_api import Browser, Page, expect

from paas.hosts.models import Host, HostState
from paas.hosts.services import host_set_state
from paas.hosts.upstreams import instance_create
from tests.support.artifacts import artifact_dir
from tests.web.pages.support import GiB, deployed_app, host
from tests.web.test_browser import browser, daphne  # noqa: F401 - fixtures
from tests.web.test_live_events import crash

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(admin_user: Any) -> Any:
    """Made before the browser starts (its event loop makes this thread async)."""
    return deployed_app(admin_user, "shop", host("host-1"), ["running", "running"])


def in_thread(change: Callable[[], None]) -> None:
    """Run a service where Django allows it: Playwright's loop owns this thread."""

    def run() -> None:
        try:
            change()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()


def place(app: Any, *, index: int) -> None:
    """A new instance row, as a deploy or scale places it (not started)."""
    instance_create(
        host=Host.objects.get(name="host-1"), process_type="web", app=app,
        release=app.releases.get(number=1), index=index,
        container_name=f"{app.name}.v1.web.{index}", memory_bytes=GiB,
    )  # fmt: skip


def open_live(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-live", "on")
    # A reload would lose this: its staying proves the page changed in place.
    page.evaluate("window.notReloaded = true")


def still_the_same_page(page: Page) -> None:
    assert page.evaluate("window.notReloaded") is True


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "password")
    page.click("button[type=submit]")
    expect(page.locator("tr[data-app=shop]")).to_be_visible()


def test_state_changes_show_up_on_open_pages_without_a_reload(
    shop: Any,
    admin_user: Any,
    daphne: str,  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, daphne)

    open_live(page, f"{daphne}/apps/shop/")
    row = page.locator('tr[data-instance="shop.v1.web.1"]')
    expect(row.locator(".i-state")).to_have_text("Running")
    in_thread(lambda: crash("shop.v1.web.1"))
    expect(row.locator(".i-state")).to_contain_text("Crashed (exit 3)")
    expect(page.locator('tr[data-instance="shop.v1.web.2"] .i-state')).to_have_text("Running")
    still_the_same_page(page)
    page.screenshot(path=str(artifact_dir() / "live-app-instance-crashed.png"), full_page=True)

    open_live(page, daphne + "/")
    app_row = page.locator("tr[data-app=shop]")
    expect(app_row.locator(".app-status")).to_have_text("crashed")
    expect(app_row.locator(".instances")).to_contain_text("1/2 running")
    in_thread(lambda: crash("shop.v1.web.2"))
    expect(app_row.locator(".instances")).to_contain_text("0/2 running")
    expect(app_row.locator(".instances")).to_contain_text("2 crashed")
    still_the_same_page(page)

    open_live(page, f"{daphne}/hosts/")
    host_row = page.locator("tr[data-host=host-1]")
    expect(host_row.locator(".h-state .state")).to_have_text("Ready")
    in_thread(
        lambda: host_set_state(
            user=admin_user, host=Host.objects.get(name="host-1"), state=HostState.DRAINING
        )
    )
    expect(host_row.locator(".h-state .state")).to_have_text("Draining")
    # A new instance placed there joins its list and counts.
    in_thread(lambda: place(shop, index=3))
    placed = host_row.locator('li[data-instance="shop.v1.web.3"]')
    expect(placed).to_contain_text("Pending")
    expect(host_row.locator(".instances")).to_have_text("0/3 running")
    expect(host_row.locator(".h-state .state")).to_have_class("state state-host-draining")
    expect(host_row.get_by_role("button", name="Make ready")).to_be_visible()
    still_the_same_page(page)
    page.screenshot(path=str(artifact_dir() / "live-hosts-draining.png"), full_page=True)
