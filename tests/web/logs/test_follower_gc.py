"""The follower keeps what its process set up (Django, the imports) out of
the garbage collector's full passes: walking it all stalled every stream and
the writer for ~80-90 ms a few times a minute under a flood."""

from __future__ import annotations

import asyncio
import gc
import io

import pytest

from paas.logs.management.commands.logs_follow import follow_logs


@pytest.mark.django_db(transaction=True)
async def test_following_freezes_what_the_process_set_up():
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        stop = asyncio.Event()
        stop.set()  # set up, then stop at once
        await asyncio.wait_for(follow_logs(stop, io.StringIO()), 60)
        # Django's models and settings were set up before: now out of gc's way.
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
