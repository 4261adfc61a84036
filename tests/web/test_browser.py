"""A person's path through the panel, in a real Chromium against a real
daphne, Celery worker and Redis: sign in, create an app, upload a zip, and
watch the build log arrive live."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.daphne import run_daphne
from tests.web.archives import HELLO, zipped
from tests.web.conftest import Workers, _worker_env

# Debian's chromium is installed by scripts/test; Playwright cannot download one here.
pytestmark = pytest.mark.django_db(transaction=True)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip

# Waits, not timing goals: an upload and its build page on a loaded CI machine.
UPLOAD_WAIT_MS = 120_000


@pytest.fixture
def daphne(redis_url: str, tmp_path: Path, settings) -> Iterator[str]:
    env = {**_worker_env(redis_url), "PAAS_UPLOAD_DIR": str(settings.UPLOAD_DIR)}
    with run_daphne(env, tmp_path) as server:
        yield server.url


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_alice_uploads_a_zip_and_watches_the_log_live(
    alice, daphne, browser, workers: Workers, tmp_path: Path, settings
):
    # Uploads land where the daphne process stores them; the worker must see them.
    workers.env["PAAS_UPLOAD_DIR"] = str(settings.UPLOAD_DIR)
    workers.start()
    source = tmp_path / "hello.zip"
    source.write_bytes(zipped(HELLO))
    page = browser.new_page()
    page.goto(f"{daphne}/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pw-123")
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Apps")).to_be_visible()

    page.fill("input[name=name]", "Bad Name")
    page.click("text=Create app")
    # The browser's own pattern check stops it first; bypass it to see ours.
    page.evaluate("document.querySelector('input[name=name]').removeAttribute('pattern')")
    page.click("text=Create app")
    expect(page.locator(".flash.error")).to_contain_text("DNS label")

    page.fill("input[name=name]", "hello-web")
    page.click("text=Create app")
    expect(page.get_by_role("heading", name="hello-web")).to_be_visible()

    page.set_input_files("#source", str(source))
    page.wait_for_url("**/builds/**", timeout=UPLOAD_WAIT_MS)
    expect(page.locator("#state")).to_have_text("succeeded", timeout=UPLOAD_WAIT_MS)
    log = page.locator("#log")
    expect(log).to_contain_text("-----> Build #1 of hello-web from hello.zip")
    expect(log).to_contain_text("detected a python app")
    expect(page.locator("#image-ref")).to_contain_text("/hello-web@sha256:")
    expect(log).to_contain_text("-----> Build succeeded")
    if os.environ.get("PAAS_SCREENSHOTS"):
        page.screenshot(path=os.environ["PAAS_SCREENSHOTS"] + "/build.png", full_page=True)


# A small upload can finish, and the page move on, before a check sees the
# bar: every change of it is kept where the next page can read it.
RECORD_PROGRESS_BAR = """() => {
  const bar = document.getElementById("progress");
  new MutationObserver(() => {
    const seen = JSON.parse(sessionStorage.getItem("bar") || "[]");
    seen.push({hidden: bar.hidden, value: bar.value});
    sessionStorage.setItem("bar", JSON.stringify(seen));
  }).observe(bar, {attributes: true});
}"""


def _alice_creates_an_app(browser: Browser, daphne: str, name: str) -> Page:
    """A new page, signed in as alice, on which she has created app ``name``."""
    page = browser.new_page()
    page.goto(f"{daphne}/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pw-123")
    page.click("button[type=submit]")
    page.fill("input[name=name]", name)
    page.click("text=Create app")
    return page


def test_a_zip_dropped_on_the_page_uploads_with_a_progress_bar(
    alice, daphne, browser, workers: Workers, settings
):
    import base64

    workers.env["PAAS_UPLOAD_DIR"] = str(settings.UPLOAD_DIR)
    workers.start()
    page = _alice_creates_an_app(browser, daphne, "dropped")
    page.wait_for_url("**/apps/dropped/")  # the drop zone is on the app's page
    # A drop as the browser makes it: a DataTransfer holding the file.
    payload = base64.b64encode(zipped(HELLO)).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.zip", {type: "application/zip"}));
            return dt;
        }""",
        payload,
    )
    page.evaluate(RECORD_PROGRESS_BAR)
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    page.wait_for_url("**/builds/**", timeout=UPLOAD_WAIT_MS)
    seen = page.evaluate("JSON.parse(sessionStorage.getItem('bar') || '[]')")
    assert any(not s["hidden"] for s in seen), seen  # the bar was shown
    assert seen[-1] == {"hidden": False, "value": 100}, seen  # and full at the end
    expect(page.locator("#state")).to_have_text("succeeded", timeout=UPLOAD_WAIT_MS)
    expect(page.locator("#log")).to_contain_text("from dropped.zip")


def test_alice_saves_a_build_secret_and_cancels_a_running_build(
    alice, daphne, browser, workers: Workers, tmp_path: Path, settings
):
    import uuid

    from tests.web.archives import targz

    workers.env["PAAS_UPLOAD_DIR"] = str(settings.UPLOAD_DIR)
    workers.start()
    page = _alice_creates_an_app(browser, daphne, "slow")

    settings_form = page.locator("#build-settings")
    settings_form.locator("input[name=name]").nth(1).fill("api_token")
    settings_form.locator("input[name=value]").nth(1).fill("s3cret-value-from-the-page")
    page.click("text=Save secret")
    expect(page.locator(".flash")).to_contain_text("Saved build secret api_token")
    expect(settings_form).to_contain_text("api_token")
    assert "s3cret-value-from-the-page" not in page.content()
    if os.environ.get("PAAS_SCREENSHOTS"):
        page.screenshot(path=os.environ["PAAS_SCREENSHOTS"] + "/settings.png", full_page=True)

    marker = f"started-{uuid.uuid4().hex[:8]}"
    dockerfile = f'FROM stack\nRUN echo {marker} && sleep 600\nCMD ["true"]\n'.encode()
    source = tmp_path / "slow.tar.gz"
    source.write_bytes(targz({"Dockerfile": dockerfile}))
    page.set_input_files("#source", str(source))
    page.wait_for_url("**/builds/**", timeout=UPLOAD_WAIT_MS)
    expect(page.locator("#log")).to_contain_text(f"       {marker}", timeout=60_000)
    page.click("text=Cancel this build")
    expect(page.locator("#state")).to_have_text("cancelled", timeout=15_000)
    expect(page.locator("#log")).to_contain_text("-----> Build cancelled", timeout=15_000)
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#error")).to_have_text("Cancelled by alice.")
    if os.environ.get("PAAS_SCREENSHOTS"):
        page.screenshot(path=os.environ["PAAS_SCREENSHOTS"] + "/cancelled.png", full_page=True)
