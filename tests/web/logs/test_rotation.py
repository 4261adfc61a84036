"""The agent's container log is size-capped and rotated; the follower may be
down or behind meanwhile. Lines still in the agent's files are stored exactly
once however often the files rotated; lines rotated away before they were
read are reported by a visible ``platform`` line with their number, never
lost silently. A real agent (small caps), real containers, the real follower.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async

from paas.applications.services import app_create
from paas.logs.models import LogLine, LogSource
from tests.support.agent_harness import AgentProcess
from tests.support.registry import TestRegistry
from tests.web.logs.support import running_agent
from tests.web.logs.test_follower import following, run_instance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.root]

MAX_BYTES = 64 * 1024
# Bursts of numbered lines with pauses, so the agent's polls take them in
# several reads and its log rotates between them.
BURSTS = (
    "i=0; b=0; while [ $b -lt {bursts} ]; do j=0; while [ $j -lt {size} ]; do "
    "echo n-$i; i=$((i+1)); j=$((j+1)); done; b=$((b+1)); usleep 200000; done; sleep 1000"
)
LOST = re.compile(r"^(\d+) lines? of web\.\d were lost here")


@pytest.fixture
def small_log_agent(registry: TestRegistry) -> Iterator[AgentProcess]:
    """An agent keeping 4 files of 64 KiB of log per container (~3,000 lines)."""
    with running_agent(
        registry, "pr-", PAAS_AGENT_LOG_MAX_BYTES=str(MAX_BYTES), PAAS_AGENT_LOG_MAX_FILES="4"
    ) as proc:
        yield proc


def start_bursts(agent: AgentProcess, image: str, name: str, bursts: int, size: int) -> None:
    cmd = ["sh", "-c", BURSTS.format(bursts=bursts, size=size)]
    status, info = agent.request(
        "POST", "/v1/containers", {"name": name, "image": image, "cmd": cmd}
    )
    assert status == 201, info


async def wait_written(agent: AgentProcess, name: str, last: str, timeout_s: float = 120) -> None:
    """Until the agent has taken in the container's line ``last``."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, lines = await asyncio.to_thread(
            agent.request, "GET", f"/v1/containers/{name}/logs?tail=1"
        )
        if status == 200 and lines and lines[-1]["line"] == last:
            return
        assert time.monotonic() < deadline, f"{name} did not write {last}: {lines}"
        await asyncio.sleep(0.1)


def stored_texts(app_id: int, instance: str) -> list[tuple[str, str]]:
    lines = LogLine.objects.filter(app_id=app_id, instance=instance).order_by("seq")
    return list(lines.values_list("source", "text"))


async def wait_stored(app_id: int, instance: str, last: str, timeout_s: float = 120) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        lines = await sync_to_async(stored_texts)(app_id, instance)
        if lines and lines[-1][1] == last:
            return lines
        assert time.monotonic() < deadline, f"{instance}: {lines[-3:]} stored, not {last}"
        await asyncio.sleep(0.1)


def numbers(lines: list[tuple[str, str]]) -> list[int]:
    return [int(text[2:]) for source, text in lines if source == LogSource.APP]


async def test_rotated_lines_are_stored_once_or_reported_lost_never_silently(
    alice, small_log_agent, busybox
):
    agent = small_log_agent
    app = await sync_to_async(app_create)(user=alice, team=alice.personal_team, name="chatty")
    suffix = agent.nft_table[-6:]
    # web.1 writes ~100 KiB of log: rotated, still all in the agent's files.
    # web.2 writes ~3 MiB: most of it rotated away before anyone reads it.
    within, beyond = f"chatty-{suffix}-web-1", f"chatty-{suffix}-web-2"
    start_bursts(agent, busybox.ref, within, bursts=4, size=300)
    start_bursts(agent, busybox.ref, beyond, bursts=30, size=1000)
    await wait_written(agent, within, "n-1199")
    await wait_written(agent, beyond, "n-29999")
    rotated = sorted(p.name for p in (agent.root / "containers").rglob("log.jsonl*"))
    assert rotated.count("log.jsonl.1") == 2  # both containers' logs rotated
    # The follower starts only now: it is behind by all of it.
    await sync_to_async(run_instance)(app, agent, within)
    await sync_to_async(run_instance)(app, agent, beyond, index=2)

    async with following():
        kept = await wait_stored(app.pk, "web.1", "n-1199")
        cut = await wait_stored(app.pk, "web.2", "n-29999")

    assert kept == [(LogSource.APP, f"n-{i}") for i in range(1200)]  # each once, in order
    notice, *rest = cut
    assert notice[0] == LogSource.PLATFORM
    match = LOST.match(notice[1])
    assert match, notice
    lost = int(match.group(1))
    assert numbers(rest) == list(range(lost, 30000))  # the rest each once, in order
    assert 0 < lost < 30000 - 1000
