"""Which queue each task goes to (paas/core/work_slots.py): the beat's loops
to ``control``, never paused; builds to ``builds``; every other task to the
default queue, counted as long work. A new task must be placed here on
purpose: one that waits on an agent or a build for minutes must not go to
``control``, where it would hold the thread kept for the heartbeat."""

from __future__ import annotations

from django.conf import settings

from paas.celery import app
from paas.core.work_slots import BUILD_QUEUE, CONTROL_QUEUE, WORK_QUEUE, Slots, SlottedTask

CONTROL = {
    "builds.fail_abandoned", "builds.redrive", "deploy.observe", "deploy.reconcile",
    "deploy.redrive", "hosts.heartbeat", "hosts.push_router_sources", "logs.enforce_retention",
    "metrics.collect", "metrics.compact",
}  # fmt: skip
LONG = {
    "builds.housekeep", "deploy.app_action", "deploy.app_delete", "deploy.converge",
    "deploy.instance_action", "deploy.release", "deploy.release_from_image",
    "deploy.retire_old", "gitdeploy.webhook_deploy",
}  # fmt: skip


def _queues() -> dict[str, str]:
    app.loader.import_default_modules()
    names = [name for name in app.tasks if not name.startswith("celery.")]
    return {name: app.amqp.router.route({}, name)["queue"].name for name in names}


def test_every_task_is_placed_on_purpose() -> None:
    queues = _queues()
    assert set(queues) == CONTROL | LONG | {"builds.run"}, "place the new task in a queue"
    assert {n for n, q in queues.items() if q == CONTROL_QUEUE} == CONTROL
    assert {n for n, q in queues.items() if q == WORK_QUEUE} == LONG
    assert queues["builds.run"] == BUILD_QUEUE


def test_the_beats_loops_all_go_to_the_control_queue() -> None:
    queues = _queues()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        task = str(entry["task"])
        if task != "builds.housekeep":  # maintenance: it can wait for a slot
            assert queues[task] == CONTROL_QUEUE, task


def test_every_task_runs_through_the_slots() -> None:
    app.loader.import_default_modules()
    assert all(isinstance(task, SlottedTask) for task in app.tasks.values())


def test_a_build_needs_a_build_slot_and_a_work_slot() -> None:
    slots = Slots({"work": 3, "builds": 2})
    assert slots.take(("work", "builds")) and slots.take(("work", "builds"))
    assert not slots.take(("work", "builds"))  # both builds slots taken
    assert slots.take(("work",))  # a deploy still fits
    assert slots.full(("work",)) and not slots.take(("work",))
    slots.give(("work", "builds"))  # a build ends: work 2/3, builds 1/2
    assert not slots.full(("work", "builds"))
    assert slots.take(("work",))  # a deploy takes the free work slot
    # Taken all or none: a build refused for want of a work slot leaves no
    # build slot counted.
    assert not slots.take(("work", "builds"))
    slots.give(("work",))
    assert slots.take(("work", "builds"))
    assert slots.full(("builds",)) and slots.full(("work",))
