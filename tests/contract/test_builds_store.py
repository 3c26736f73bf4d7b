"""The BuildStore contract, one suite run against the in-memory fake, SQLite and PostgreSQL.

What the build service and the API rely on: a submit stores a pending, queued build with
its first event; an idempotency key returns the first build; lists come newest first in
pages; unknown builds are NotFound.
"""

from __future__ import annotations

import pytest

from rdev.domain.errors import NotFound
from rdev.domain.models import BuildStatus
from tests.contract.build_worlds import World, world

__all__ = ["world"]


async def test_a_submitted_build_is_pending_queued_for_its_agent_and_audited(
    world: World,
) -> None:
    build = await world.submit(prompt="hello", agent="opencode", labels=["gpu"])
    got = await world.builds.get(build.task_id)
    assert got.status == BuildStatus.PENDING and got.attempts == 0
    assert got.project_id == "p1" and got.project_name == "proj-p1"
    assert got.spec.prompt == "hello" and got.rendered_prompt == "hello"
    assert got.agent_info == {"agent": "opencode"} and got.max_attempts == 3
    assert await world.builds.pending_agent(build.task_id) == "opencode"
    [event] = await world.builds.events(build.task_id)
    assert (event.seq, event.from_status, event.to_status) == (1, None, BuildStatus.PENDING)
    assert (event.actor, event.reason) == ("test", "submitted")
    assert await world.builds.logs(build.task_id) == []


async def test_an_idempotency_key_returns_the_first_build_of_the_project(world: World) -> None:
    await world.add_project("p2", "proj-p2")
    first = await world.submit(idempotency_key="k1")
    again, created = await world.builds.submit(
        project_id="p1",
        spec=first.spec,
        agent="command",
        labels=[],
        rendered_prompt="other",
        template_name=None,
        template_version=None,
        max_attempts=3,
        idempotency_key="k1",
        actor="test",
    )
    assert (again.task_id, created) == (first.task_id, False)
    assert (await world.builds.by_idempotency_key("p1", "k1")) is not None
    assert await world.builds.by_idempotency_key("p2", "k1") is None
    other = await world.submit("p2", idempotency_key="k1")  # keys are per project
    assert other.task_id != first.task_id


async def test_lists_come_newest_first_in_pages_filtered_by_project_and_status(
    world: World,
) -> None:
    await world.add_project("p2", "proj-p2")
    ids = [(await world.submit(prompt=f"t{i}")).task_id for i in range(5)]
    elsewhere = await world.submit("p2")
    await world.builds.cancel(ids[0], "me")
    page, cursor = await world.builds.list(project_id="p1", statuses=None, limit=3, cursor=None)
    assert [b.task_id for b in page] == ids[::-1][:3] and cursor is not None
    rest, end = await world.builds.list(project_id="p1", statuses=None, limit=3, cursor=cursor)
    assert [b.task_id for b in rest] == ids[::-1][3:] and end is None
    cancelled, _ = await world.builds.list(
        project_id=None, statuses=["cancelled"], limit=10, cursor=None
    )
    assert [b.task_id for b in cancelled] == [ids[0]]
    only, _ = await world.builds.list(
        project_id=None, statuses=None, limit=10, cursor=None, project_ids=["p2"]
    )
    assert [b.task_id for b in only] == [elsewhere.task_id]


async def test_unknown_builds_are_not_found_and_have_no_events_or_logs(world: World) -> None:
    with pytest.raises(NotFound):
        await world.builds.get("no-such-build")
    assert await world.builds.events("no-such-build") == []
    assert await world.builds.logs("no-such-build") == []
    assert await world.builds.pending_agent("no-such-build") is None
