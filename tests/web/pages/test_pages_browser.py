"""The new pages in a real Chromium against a real daphne: an admin goes
through the dashboard, hosts (join token, drain), team settings (create,
add a member by email, change a role, the last-owner refusal), the API
tokens page and the activity pages; a viewer sees the app without action
buttons; a throttled sign-in says so. Each page is saved as a screenshot
in the artifacts directory (tests/support/artifacts.py)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from paas.accounts.models import Role
from paas.accounts.services import team_add_member
from tests.support.artifacts import artifact_dir
from tests.web.pages.support import GiB, deployed_app, host
from tests.web.test_browser import browser, daphne  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def platform(admin_user: Any, django_user_model: Any) -> dict[str, Any]:
    """Made before the browser starts (its event loop makes this thread async)."""
    shop = deployed_app(admin_user, "shop", host("host-1", memory=4 * GiB),
                        ["running", "running", "crashed"])  # fmt: skip
    host("host-2", memory=8 * GiB)
    carol = django_user_model.objects.create_user(
        username="carol", password="carol-pw-123", email="carol@example.com"
    )
    team_add_member(team=admin_user.personal_team, user=carol, role=Role.VIEWER)
    return {"shop": shop}


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifact_dir() / f"pages-{name}.png"), full_page=True)


def sign_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_an_admin_goes_through_every_page_and_a_viewer_gets_no_buttons(
    platform: dict[str, Any],
    daphne: str,  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, daphne, "admin", "password")
    row = page.locator("tr[data-app=shop]")
    expect(row).to_contain_text("v1")
    expect(row.locator(".instances")).to_contain_text("2/3 running")
    expect(row.locator(".instances")).to_contain_text("1 crashed")
    expect(row.get_by_role("link", name="shop.localhost")).to_have_attribute(
        "href", "http://shop.localhost:8080/"
    )
    row.locator("summary").click()
    shot(page, "dashboard")

    page.get_by_role("link", name="Hosts").click()
    reserved = page.get_by_role("meter", name="memory reserved on host-1")
    expect(reserved).to_have_attribute("aria-valuenow", "75")  # 3 instances of 1 GiB on 4 GiB
    expect(page.locator("tr[data-host=host-1] .instances")).to_have_text("2/3 running")
    page.fill("input[name=note]", "host-3")
    page.click("text=Make a join token")
    expect(page.locator("#join-token-value")).to_contain_text("join_")
    shot(page, "hosts-join-token")
    page.locator("tr[data-host=host-2]").get_by_role("button", name="Drain").click()
    expect(page.locator(".flash.success")).to_contain_text("Draining host-2")
    expect(page.locator("#join-token-value")).to_have_count(0)  # shown once
    page.locator("tr[data-host=host-1]").get_by_role("button", name="Remove").click()
    expect(page.locator(".flash.error")).to_contain_text("drain it first")
    shot(page, "hosts")

    page.get_by_role("link", name="Teams").click()
    page.fill("input[name=name]", "Web team")
    page.click("text=Create team")
    expect(page.get_by_role("heading", name="Web team")).to_be_visible()
    page.fill("input[name=who]", "carol@example.com")
    page.select_option("#add-member select[name=role]", "member")
    page.click("text=Add member")
    expect(page.locator(".flash.success")).to_contain_text("Added carol as member")
    admin_row = page.locator("tr[data-member=admin]")
    admin_row.locator("select[name=role]").select_option("viewer")
    admin_row.get_by_role("button", name="Change role").click()
    expect(page.locator(".flash.error")).to_contain_text("admin is the last owner of Web team")
    carol_row = page.locator("tr[data-member=carol]")
    carol_row.locator("select[name=role]").select_option("viewer")
    carol_row.get_by_role("button", name="Change role").click()
    expect(page.locator(".flash.success")).to_contain_text("carol is now viewer")
    shot(page, "team")
    page.get_by_role("link", name="Activity").first.click()
    expect(page.locator("#activity")).to_contain_text("team.member_role")
    shot(page, "team-activity")
    page.get_by_role("link", name="Teams").click()
    shot(page, "teams")
    page.get_by_role("link", name="API tokens").last.click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()

    page.goto(f"{daphne}/apps/shop/activity/")
    expect(page.get_by_role("heading", name="Activity of shop")).to_be_visible()
    shot(page, "app-activity")

    viewer = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(viewer, daphne, "carol", "carol-pw-123")
    viewer.goto(f"{daphne}/apps/shop/")
    expect(viewer.locator("#viewer-note")).to_be_visible()
    # No form that changes anything; what buttons remain only change the view
    # (the log filters, the metrics' time span), none submits anything.
    expect(viewer.locator("main form[method=post]")).to_have_count(0)
    expect(viewer.locator("main button[type=submit]:not(#log-filters button)")).to_have_count(0)
    expect(viewer.locator("#dropzone")).to_have_count(0)
    shot(viewer, "app-as-viewer")
    viewer.goto(f"{daphne}/hosts/")
    expect(viewer.get_by_role("heading", name="Hosts")).to_have_count(0)  # a 404 to her


def test_a_throttled_sign_in_says_when_to_try_again(
    platform: dict[str, Any],
    daphne: str,  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    page = browser.new_page()
    for _ in range(5):
        sign_in(page, daphne, "carol", "not-her-password")
        expect(page.locator(".flash.error")).to_contain_text("did not match")
    sign_in(page, daphne, "carol", "carol-pw-123")
    expect(page.locator(".flash.error")).to_contain_text(
        "Too many failed sign-ins for this account. Try again in 15 minutes"
    )
    shot(page, "signin-throttled")
