"""Issue 13, fault 3 (the log part): Redis, the broker and the channel layer,
restarted while a container keeps writing. Every line appears exactly once
in the stored log and in a real Chromium on the app page, whose socket
stays open across the Redis restart (lines published while Redis was away
are read from the database) and then reconnects when the web process
restarts (the page resumes from the last line it had).

All real: redis-server (stopped, then started again on its port), an agent
process running a busybox container, ``manage.py logs_follow`` and daphne
as processes of their own, and Debian's Chromium.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, expect

from paas.applications.services import app_create
from paas.logs.models import LogLine
from tests.support.daphne import run_daphne
from tests.support.processes import (
    free_port,
    start_process,
    stop_process,
    wait_until,
)
from tests.support.redis_server import run_redis
from tests.web.conftest import ROOT, _worker_env
from tests.web.logs.test_follower import run_instance
from tests.web.test_browser import browser  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.root]

T = TypeVar("T")
COUNTER = "i=0; while true; do echo n-$i; i=$((i+1)); sleep 0.02; done"
SHOWN = re.compile(r": n-(\d+)$")
WAIT_S = 90  # conditions on a loaded 2-core machine, not timing goals
MOVED_ON = 40  # lines the container writes between the steps below


def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The ORM from a test whose thread runs Playwright's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


@pytest.fixture
def counter_app(alice):
    """Made before the browser starts (its event loop makes this thread async)."""
    return app_create(user=alice, team=alice.personal_team, name="counter")


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[Any]:
    with open(log, "ab") as out:
        proc = start_process(argv, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        stop_process(proc)


def stored_numbers(app_id: int) -> list[int]:
    texts = LogLine.objects.filter(app_id=app_id).order_by("seq").values_list("text", flat=True)
    return [int(t[2:]) for t in texts if t.startswith("n-")]


def shown_numbers(page: Page) -> list[int]:
    texts = page.eval_on_selector_all("#app-log .log-line", "els => els.map(e => e.textContent)")
    return [int(m.group(1)) for t in texts if (m := SHOWN.search(t))]


def test_a_redis_restart_loses_and_repeats_no_line_in_the_store_or_the_browser(
    alice,
    counter_app,
    agent,
    busybox,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
):
    redis_port, web_port = free_port(), free_port()
    env = {
        **in_thread(_worker_env, f"redis://127.0.0.1:{redis_port}/0"),
        # Fewer than the lines written while the page is away: only a resume
        # from the page's last line can show them all.
        "PAAS_LOG_REPLAY_LINES": "100",
        "PAAS_LOG_FOLLOW_REFRESH_S": "0.2",
    }
    name = f"counter-{agent.nft_table[-6:]}-web-1"
    in_thread(run_instance, counter_app, agent, name)
    follow = [sys.executable, "manage.py", "logs_follow"]

    def stored() -> list[int]:
        return in_thread(stored_numbers, counter_app.pk)

    def stored_beyond(n: int) -> list[int] | None:
        numbers = stored()
        return numbers if numbers and numbers[-1] >= n else None

    def shown_beyond(n: int) -> list[int] | None:
        numbers = shown_numbers(page)
        return numbers if numbers and max(numbers) >= n else None

    with contextlib.ExitStack() as stack:
        redis = contextlib.ExitStack()
        stack.callback(redis.close)
        redis.enter_context(run_redis(tmp_path / "redis", redis_port))
        stack.enter_context(process(follow, env, tmp_path / "follower.log"))
        daphne = stack.enter_context(contextlib.ExitStack())
        daphne.enter_context(run_daphne(env, tmp_path, port=web_port))

        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{web_port}/apps/counter/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "alice-pw-123")
        page.click("button[type=submit]")
        expect(page.locator("#log-status")).to_have_text("Live")
        status, info = agent.request(
            "POST", "/v1/containers",
            {"name": name, "image": busybox.ref, "cmd": ["sh", "-c", COUNTER]},
        )  # fmt: skip
        assert status == 201, info
        wait_until(lambda: shown_beyond(MOVED_ON), timeout_s=WAIT_S, what="lines on the page")

        # Redis goes away; the follower keeps storing what the container writes.
        redis.close()
        before = stored()[-1]
        wait_until(lambda: stored_beyond(before + MOVED_ON), timeout_s=WAIT_S,
                   what="lines stored while Redis is down")  # fmt: skip
        redis.enter_context(run_redis(tmp_path / "redis", redis_port))
        during = stored()[-1]
        wait_until(lambda: shown_beyond(during + MOVED_ON), timeout_s=WAIT_S,
                   what="lines on the page after Redis is back")  # fmt: skip
        across_redis = sorted(shown_numbers(page))
        assert across_redis == list(range(across_redis[-1] + 1))

        # The web process restarts: the page's socket drops, then resumes.
        daphne.close()
        gone = stored()[-1]
        wait_until(lambda: stored_beyond(gone + 2 * MOVED_ON), timeout_s=WAIT_S,
                   what="lines stored while the web process is down")  # fmt: skip
        daphne.enter_context(run_daphne(env, tmp_path, port=web_port))
        back = stored()[-1]
        wait_until(lambda: shown_beyond(back + MOVED_ON), timeout_s=WAIT_S,
                   what="lines on the page after it reconnected")  # fmt: skip

        shown = sorted(shown_numbers(page))
        numbers = stored()
    assert numbers == list(range(len(numbers)))  # every line stored once, in order
    assert shown == list(range(shown[-1] + 1))  # every line shown once
    assert numbers[-1] >= shown[-1] > back
    # The operator is told once per outage, not once per batch.
    said = (tmp_path / "follower.log").read_text()
    assert 1 <= said.count("could not publish log lines to Redis") <= 3, said[-2000:]
    assert said.rindex("publishing log lines to Redis works again") > said.rindex("could not")
    page.close()
