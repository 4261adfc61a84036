"""The whole tour in a real Chromium, on real parts only: daphne, a Celery
worker, Redis, the registry, an agent running runc containers, nginx as the
router and the log follower. Alice signs in, creates an app, uploads the
hello-world sample with the progress bar, watches the build log stream,
opens the app through the router, sees that request's router line and the
app's own output in the live log, scales to 2, changes a config var and
rolls back (the dashboard, release rows and instances update live); carol, a viewer, sees
the app without any action button. Each main page is saved as a screenshot
(tests/support/artifacts.py).

One test on purpose: the agent's first pull of the stack is the slow part,
and every later step builds on the one before."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.agent_harness import AgentProcess, free_port
from tests.support.artifacts import artifact_dir
from tests.support.daphne import run_daphne
from tests.support.router import TestRouter
from tests.web.conftest import ROOT, Workers, _worker_env
from tests.web.deploy_support import (
    add_host,
    container_names,
    sample_archive,
    use_registry_settings,
)
from tests.web.test_browser import RECORD_PROGRESS_BAR, browser  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(1500)]

# Waits, not timing goals: a loaded CI machine, and the agent's first pull of the stack.
UPLOAD_WAIT_MS = 180_000
FIRST_DEPLOY_WAIT_MS = 600_000
DEPLOY_WAIT_MS = 180_000
LOG_WAIT_MS = 60_000

# Counts log lines the build page's script adds after the page loaded:
# lines that came over the WebSocket, not with the page.
COUNT_STREAMED_LINES = """
document.addEventListener("DOMContentLoaded", () => {
  window.streamedLines = 0;
  const log = document.getElementById("log");
  if (log) new MutationObserver((changes) => {
    for (const c of changes) window.streamedLines += c.addedNodes.length;
  }).observe(log, {childList: true});
});
"""


@pytest.fixture
def platform(
    agent: AgentProcess,
    router: TestRouter,
    workers: Workers,
    redis_url: str,
    settings: Any,
    build_env: dict[str, str],
    carol_viewer_in_alices_team: Any,
    tmp_path: Path,
) -> Iterator[dict[str, Any]]:
    """Everything but the browser, which must start last (its event loop
    makes this thread async, and the ORM refuses it then)."""
    use_registry_settings(settings, build_env)
    first_tcp = free_port()
    deploy_env = {
        **router.env, **build_env, "PAAS_UPLOAD_DIR": str(settings.UPLOAD_DIR),
        "PAAS_DRAIN_SECONDS": "0.5", "PAAS_HEALTH_TIMEOUT_S": "60",
        "PAAS_TCP_PORTS_FIRST": str(first_tcp), "PAAS_TCP_PORTS_LAST": str(first_tcp + 2),
        "PAAS_ROUTE_PORTS_FIRST": str(first_tcp + 3), "PAAS_ROUTE_PORTS_LAST": str(first_tcp + 5),
    }  # fmt: skip
    add_host(agent)
    workers.env.update(deploy_env)
    workers.start()
    env = {**_worker_env(redis_url), **deploy_env}
    with run_daphne(env, tmp_path) as daphne, run_follower(env, router, tmp_path):
        try:
            yield {"url": daphne.url, "router_port": router.http_port}
        finally:
            for name in container_names(agent):
                agent.request("DELETE", f"/v1/containers/{name}?force=1")


class Follower:
    def __init__(self, env: dict[str, str], router: TestRouter, tmp_path: Path) -> None:
        self.log_path = tmp_path / "follower.log"
        env = {**env, "PAAS_LOG_ROUTER_ACCESS_LOG": str(router.access_log()),
               "PAAS_LOG_FOLLOW_REFRESH_S": "0.2"}  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "logs_follow"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_follower(env: dict[str, str], router: TestRouter, tmp_path: Path) -> Follower:
    """``manage.py logs_follow``: agents' container logs and the router's access log."""
    return Follower(env, router, tmp_path)


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifact_dir() / f"tour-{name}.png"), full_page=True)


def sign_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Apps")).to_be_visible()


def release_state(page: Page, number: int) -> Any:
    return page.locator(f'tr[data-release="{number}"] .r-state .state')


def test_the_tour_from_sign_in_to_rollback_and_a_viewer_without_buttons(
    platform: dict[str, Any],
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    base, router_port = platform["url"], platform["router_port"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(COUNT_STREAMED_LINES)
    page = context.new_page()

    # Sign in and create the app.
    sign_in(page, base, "alice", "alice-pw-123")
    page.fill("input[name=name]", "tour")
    page.click("text=Create app")
    expect(page.get_by_role("heading", name="tour")).to_be_visible()
    page.goto(f"{base}/")
    expect(page.locator("tr[data-app=tour] .app-status")).to_have_text("not deployed")
    shot(page, "dashboard")
    # The dashboard stays open in its own tab, to follow the deploy live.
    dashboard = page
    expect(dashboard.locator("body")).to_have_attribute("data-live", "on")
    dashboard.evaluate("window.notReloaded = true")

    # Upload the hello-world sample with the progress bar.
    page = context.new_page()
    page.goto(f"{base}/apps/tour/")
    source = tmp_path / "hello-world.tar.gz"
    source.write_bytes(sample_archive())
    page.evaluate(RECORD_PROGRESS_BAR)
    page.set_input_files("#source", str(source))
    page.wait_for_url("**/builds/**", timeout=UPLOAD_WAIT_MS)
    bar = page.evaluate("JSON.parse(sessionStorage.getItem('bar') || '[]')")
    assert any(not b["hidden"] for b in bar), bar  # the bar was shown
    assert bar[-1] == {"hidden": False, "value": 100}, bar  # and full at the end

    # The build log streams in while the build runs.
    log = page.locator("#log")
    expect(page.locator("#state")).to_have_text("succeeded", timeout=UPLOAD_WAIT_MS)
    expect(log).to_contain_text("-----> Build #1 of tour from hello-world.tar.gz")
    expect(log).to_contain_text("detected a python app")
    expect(log).to_contain_text("-----> Build succeeded")
    assert page.evaluate("window.streamedLines") > 0
    shot(page, "build")

    # The release goes live on the app page (its row updates in place).
    page.goto(f"{base}/apps/tour/")
    expect(page.locator("#build-rows tr[data-number='1'] .b-state")).to_have_text("succeeded")
    expect(release_state(page, 1)).to_have_text("Current", timeout=FIRST_DEPLOY_WAIT_MS)
    web1 = page.locator('tr[data-instance="tour.v1.web.1"] .i-state')
    expect(web1).to_have_text("Running", timeout=DEPLOY_WAIT_MS)
    row = dashboard.locator("tr[data-app=tour]")
    expect(row.locator(".app-status")).to_have_text("running")
    expect(row.locator(".app-release")).to_have_text("v1")
    expect(row.locator(".instances")).to_have_text("1/1 running")
    expect(row.locator(".app-deployed")).to_have_text("just now")
    assert dashboard.evaluate("window.notReloaded") is True
    shot(dashboard, "dashboard-deployed")
    dashboard.close()

    # Through the real router, then that request's router line and the
    # app's own output in the live log.
    visitor = context.new_page()
    visitor.goto(f"http://tour.localhost:{router_port}/tour-visit")
    expect(visitor.locator("body")).to_have_text("Hello, world from tour-v1-web-1")
    shot(visitor, "app-through-the-router")
    visitor.close()
    app_log = page.locator("#app-log")
    expect(app_log).to_contain_text('router[router]: method=GET path="/tour-visit"',
                                    timeout=LOG_WAIT_MS)  # fmt: skip
    expect(app_log).to_contain_text("status=200")
    expect(app_log).to_contain_text("listening on", timeout=LOG_WAIT_MS)
    shot(page, "app")

    # Scale to 2: the second instance appears and starts, live.
    page.locator("#processes input[name=count]").first.fill("2")
    page.locator("#processes").get_by_role("button", name="Scale", exact=True).first.click()
    web2 = page.locator('tr[data-instance="tour.v1.web.2"] .i-state')
    expect(web2).to_have_text("Running", timeout=DEPLOY_WAIT_MS)

    # A config var makes v2; rolling back to v1 makes v3, which runs v1's code.
    page.fill("#config input[name=key]", "GREETING")
    page.fill("#config input[name=value]", "Bonjour")
    page.locator("#config").get_by_role("button", name="Set", exact=True).click()
    expect(release_state(page, 2)).to_have_text("Current", timeout=DEPLOY_WAIT_MS)
    expect(release_state(page, 1)).to_have_text("Retired")
    page.get_by_role("button", name="Roll back to v1", exact=True).click()
    expect(release_state(page, 3)).to_have_text("Current", timeout=DEPLOY_WAIT_MS)
    expect(page.locator('tr[data-release="3"]')).to_contain_text("Rollback to v1")
    expect(page.locator("#deploy-progress")).to_have_text("v3: v3 is live", timeout=DEPLOY_WAIT_MS)
    expect(release_state(page, 2)).to_have_text("Retired")
    expect(page.locator('tr[data-instance="tour.v3.web.2"] .i-state')).to_have_text(
        "Running", timeout=DEPLOY_WAIT_MS
    )
    shot(page, "app-rolled-back")
    visitor = context.new_page()
    visitor.goto(f"http://tour.localhost:{router_port}/")
    expect(visitor.locator("body")).to_contain_text("Hello, world from tour-v3-web-")
    context.close()

    # Carol, a viewer in alice's team, watches without any action button.
    viewer = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(viewer, base, "carol", "carol-pw-123")
    viewer.goto(f"{base}/apps/tour/")
    expect(viewer.locator("#viewer-note")).to_be_visible()
    expect(release_state(viewer, 3)).to_have_text("Current")
    expect(viewer.locator("main form[method=post]")).to_have_count(0)
    for action in ("Scale", "Roll back to v1", "restart", "Set", "Deploy image"):
        expect(viewer.get_by_role("button", name=action, exact=True)).to_have_count(0)
    expect(viewer.locator("#upload")).to_have_count(0)
    shot(viewer, "app-as-viewer")
    viewer.close()
