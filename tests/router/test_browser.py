"""A real Chromium reaches an app at http://<app>.localhost:<port>: it
resolves *.localhost to loopback by itself, so the README's address works
with no DNS set-up; an unknown name shows the router's 404 page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from paas.router.routes import Route, Upstream
from paas.router.services import router_apply
from tests.support.backends import Backend
from tests.support.router import TestRouter

# Debian's chromium (scripts/test installs it); Playwright cannot download one here.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_chromium_reaches_an_app_by_its_localhost_name(
    router: TestRouter, backends: list[Backend], browser: Browser
) -> None:
    router_apply(
        routes=[Route("hello", ("hello.localhost",), (Upstream("127.0.0.1", backends[0].port),))]
    )
    page = browser.new_page()
    response = page.goto(f"http://hello.localhost:{router.http_port}/from-chromium")
    assert response is not None and response.status == 200
    assert '"backend": "one"' in page.content()
    assert '"path": "/from-chromium"' in page.content()

    response = page.goto(f"http://nobody.localhost:{router.http_port}/")
    assert response is not None and response.status == 404
    assert page.title() == "No app at this address"
