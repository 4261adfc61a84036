"""`paas logs -f` (the CLI as its own process, as on a laptop) against real
daphne and Redis: lines are pushed to it, and after a dropped connection or a
restart of the web process it goes on from the last line it showed: every
line once, in order."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paas.accounts.services import api_token_create, api_token_revoke
from paas.logs.services import logs_platform_say
from tests.support.cutting_proxy import cutting_proxy
from tests.support.daphne import ROOT, Daphne, run_daphne
from tests.support.processes import start_process, stop_process, wait_until
from tests.web.logs.stream_support import daphne_env, shop_with_lines, subscribed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

WAIT_S = 90.0  # conditions on a loaded machine, not timing goals


class Follow:
    """`paas logs -f -a shop` running beside the test; its output read by threads."""

    def __init__(self, url: str, token: str, home: Path) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "PYTHONPATH": str(ROOT / "cli"), "PAAS_URL": url, "PAAS_TOKEN": token}  # fmt: skip
        self.proc = start_process(
            [sys.executable, "-m", "paas_cli", "logs", "-f", "-a", "shop"], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def texts(self) -> list[str]:
        """The text of each line shown (``<time> <source>[<where>]: <text>``)."""
        return [line.split("]: ", 1)[1] for line in self.out if "]: " in line]

    def wait_for(self, text: str) -> None:
        wait_until(lambda: text in self.texts(), timeout_s=WAIT_S,
                   what=f"{text!r} shown (stdout {self.out}, stderr {self.err})")  # fmt: skip

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def shop(alice: Any) -> Any:
    return shop_with_lines(alice, "one", "two")


@pytest.fixture
def token(alice: Any) -> str:
    return api_token_create(user=alice, name="laptop")[1]


@pytest.fixture
def follow_env(redis_url: str) -> dict[str, str]:
    return daphne_env(redis_url)


@pytest.fixture
def follows(tmp_path: Path) -> Iterator[list[Follow]]:
    started: list[Follow] = []
    yield started
    for follow in started:
        follow.stop()


def test_it_goes_on_after_the_web_process_restarts(
    shop: Any, token: str, follow_env: dict[str, str], tmp_path: Path, follows: list[Follow]
) -> None:
    with run_daphne(follow_env, tmp_path) as daphne:
        follow = Follow(daphne.url, token, tmp_path)
        follows.append(follow)
        follow.wait_for("two")
        logs_platform_say(app_id=shop.pk, text="three")
        follow.wait_for("three")
    # daphne is gone: lines stored meanwhile wait in the database.
    wait_until(lambda: any("reconnecting" in e for e in follow.err), timeout_s=WAIT_S,
               what="the CLI saying it lost the stream")  # fmt: skip
    for text in ("while down 1", "while down 2"):
        logs_platform_say(app_id=shop.pk, text=text)
    with run_daphne(follow_env, tmp_path, port=daphne.port):
        follow.wait_for("while down 2")
        logs_platform_say(app_id=shop.pk, text="after")
        follow.wait_for("after")
    assert follow.texts() == ["one", "two", "three", "while down 1", "while down 2", "after"]
    assert any("reconnected" in e for e in follow.err)


def test_it_goes_on_after_a_cut_connection_and_after_each_end_of_stream(
    shop: Any, token: str, follow_env: dict[str, str], tmp_path: Path, follows: list[Follow],
    redis_url: str,
) -> None:  # fmt: skip
    follow_env["PAAS_LOG_STREAM_MAX_S"] = "1"  # the server ends each stream often, too
    with run_daphne(follow_env, tmp_path) as daphne, cutting_proxy(daphne.port) as proxy:
        follow = Follow(f"http://127.0.0.1:{proxy.port}", token, tmp_path)
        follows.append(follow)
        follow.wait_for("two")
        expected = ["one", "two"]
        for round_ in range(3):
            wait_until(lambda: subscribed(redis_url, shop.pk, followers=1), timeout_s=WAIT_S)
            proxy.cut()
            text = f"after cut {round_}"
            logs_platform_say(app_id=shop.pk, text=text)
            expected.append(text)
            follow.wait_for(text)
        # Each stream lasts 1 s: several ends were crossed; no line twice.
        wait_until(lambda: proxy.accepted >= 6, timeout_s=WAIT_S, what="ends of stream")
        logs_platform_say(app_id=shop.pk, text="last")
        follow.wait_for("last")
        assert follow.texts() == [*expected, "last"]
        _assert_daphne_clean(daphne)


def _assert_daphne_clean(daphne: Daphne) -> None:
    assert "Traceback" not in daphne.output(), daphne.output()


def test_it_ends_with_the_platforms_message_when_its_token_is_revoked(
    shop: Any, alice: Any, follow_env: dict[str, str], tmp_path: Path, follows: list[Follow]
) -> None:
    follow_env["PAAS_LOG_STREAM_MAX_S"] = "1"  # the next reconnect is soon
    row, token = api_token_create(user=alice, name="laptop")
    with run_daphne(follow_env, tmp_path) as daphne:
        follow = Follow(daphne.url, token, tmp_path)
        follows.append(follow)
        follow.wait_for("two")
        api_token_revoke(token=row)
        assert follow.proc.wait(timeout=WAIT_S) == 1
    wait_until(lambda: any("revoked" in e for e in follow.err), timeout_s=WAIT_S,
               what=f"the refusal on stderr ({follow.err})")  # fmt: skip
    assert follow.texts() == ["one", "two"]
