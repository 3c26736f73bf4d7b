"""The event bus calls every subscriber of an event's type, in order, and a failing one
neither stops the others nor reaches the publisher."""

from __future__ import annotations

from rdev.domain.events import BuildFinished, ProjectDeleted
from rdev.domain.models import BuildResult, BuildStatus
from rdev.services.events import EventBus

FINISHED = BuildFinished("t1", BuildStatus.COMPLETED, BuildResult(success=True))


async def test_subscribers_of_the_type_run_in_order_and_others_do_not():
    bus, seen = EventBus(), []

    async def first(e: BuildFinished) -> None:
        seen.append(("first", e.task_id))

    async def second(e: BuildFinished) -> None:
        seen.append(("second", e.status))

    async def other(e: ProjectDeleted) -> None:
        seen.append(("other", e))

    bus.subscribe(BuildFinished, first)
    bus.subscribe(BuildFinished, second)
    bus.subscribe(ProjectDeleted, other)
    await bus.publish(FINISHED)

    assert seen == [("first", "t1"), ("second", BuildStatus.COMPLETED)]
    assert bus.subscribed(BuildFinished) and bus.subscribed(ProjectDeleted)


async def test_a_failing_subscriber_is_skipped_and_the_publisher_never_sees_it():
    bus, seen = EventBus(), []

    async def broken(_e: BuildFinished) -> None:
        raise RuntimeError("enqueue failed")

    async def after(e: BuildFinished) -> None:
        seen.append(e.task_id)

    bus.subscribe(BuildFinished, broken)
    bus.subscribe(BuildFinished, after)
    await bus.publish(FINISHED)  # does not raise

    assert seen == ["t1"]


async def test_an_event_nobody_listens_to_is_a_no_op():
    bus = EventBus()
    assert not bus.subscribed(BuildFinished)
    await bus.publish(FINISHED)
