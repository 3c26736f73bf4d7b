"""The CILinkStore contract, one suite run against the in-memory fake, SQLite and PostgreSQL.

What the linker relies on: a build is linked once; a due link is leased to one linker at a
time (a lease that ran out can be taken again, and the old holder then writes nothing);
links come earliest due first; one outcome stores the link's state, the build's ``ci`` and
the event's outbox row together; closed links are never handed out again.

Due times are set hours apart from now, and expired leases are leases of negative length,
so no result depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from rdev.adapters.db.ci_links import SqlCILinkStore
from rdev.adapters.db.engine import Database
from rdev.adapters.db.tables import builds, projects, webhook_deliveries
from rdev.domain.ci_links import CILinkState, CIProgress
from rdev.ports.ci import ProjectCI
from rdev.ports.ci_links import CILinkStore, LinkOutcome
from tests.contract.databases import IMPLEMENTATIONS, migrated_database
from tests.fakes.ci_links import FakeCILinkStore

CI = ProjectCI("woodpecker", "http://ci.test", "acme/shop", SecretStr("wp-token-123456"))
CI_EVENTS = ("build.ci_passed", "build.ci_failed")


class World(Protocol):
    """A store plus the seeding and reading a test needs that the port does not offer."""

    store: CILinkStore

    async def add_build(
        self,
        task_id: str,
        *,
        pushed: bool = True,
        ci: ProjectCI | None = CI,
        wanted: Iterable[str] = (),
    ) -> int: ...

    async def events(self, build_id: int) -> list[str]: ...

    async def build_ci(self, build_id: int) -> dict[str, Any] | None: ...


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeCILinkStore()
        self.store: CILinkStore = self.fake

    async def add_build(
        self,
        task_id: str,
        *,
        pushed: bool = True,
        ci: ProjectCI | None = CI,
        wanted: Iterable[str] = (),
    ) -> int:
        return self.fake.add_build(task_id, pushed=pushed, project_ci=ci, wanted=wanted)

    async def events(self, build_id: int) -> list[str]:
        return [e for b, e in self.fake.events if b == build_id]

    async def build_ci(self, build_id: int) -> dict[str, Any] | None:
        ci = self.fake.builds[build_id].ci
        return ci.to_json() if ci else None


class SqlWorld:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.store: CILinkStore = SqlCILinkStore(db)

    async def add_build(
        self,
        task_id: str,
        *,
        pushed: bool = True,
        ci: ProjectCI | None = CI,
        wanted: Iterable[str] = (),
    ) -> int:
        now = datetime.now(UTC)
        project_id = uuid.uuid4().hex
        settings: dict[str, Any] = {}
        if ci is not None:
            settings["ci"] = {
                "provider": ci.provider,
                "server_url": ci.server_url,
                "repo": ci.repo,
                "has_token": ci.token is not None,
            }
        spec: dict[str, Any] = {"prompt": "do it", "auto_commit": True, "auto_push": True}
        if wanted:
            spec |= {"callback_url": "http://127.0.0.1:9/hook", "events": list(wanted)}
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(projects).values(
                    id=project_id,
                    name="p-" + project_id[:12],
                    repo_url="https://git.test/acme/shop.git",
                    default_branch="main",
                    labels=[],
                    settings=settings,
                    ci_token=ci.token.get_secret_value() if ci and ci.token else None,
                    created_at=now,
                    updated_at=now,
                )
            )
            res = await conn.execute(
                sa.insert(builds)
                .values(
                    task_id=task_id,
                    project_id=project_id,
                    status="completed",
                    spec=spec,
                    attempts=1,
                    max_attempts=3,
                    retries=0,
                    cancel_requested=False,
                    agent_info={"pushed": pushed},
                    created_at=now,
                )
                .returning(builds.c.id)
            )
            return int(res.scalar_one())

    async def events(self, build_id: int) -> list[str]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(webhook_deliveries.c.event)
                .where(webhook_deliveries.c.build_id == build_id)
                .order_by(webhook_deliveries.c.created_at)
            )
            return list(rows.scalars().all())

    async def build_ci(self, build_id: int) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            ci: dict[str, Any] | None = (
                await conn.execute(sa.select(builds.c.ci).where(builds.c.id == build_id))
            ).scalar_one()
            return ci


@pytest.fixture(params=IMPLEMENTATIONS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "fake":
        yield FakeWorld()
        return
    async with migrated_database(request.param, tmp_path) as db:
        yield SqlWorld(db)


def task() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def sha(n: int) -> str:
    return f"{n:040x}"


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


async def linked(world: World, n: int = 1, **build: Any) -> list[int]:
    """``n`` builds with started links (due now); their build ids."""
    ids = []
    for i in range(n):
        build_id = await world.add_build(task(), **build)
        started = await world.store.start(
            build_id,
            sha(i),
            ci=CIProgress.searching("woodpecker", sha(i)),
            deadline_at=datetime.now(UTC) + hours(1),
        )
        assert started
        ids.append(build_id)
    return ids


async def test_a_candidate_tells_whether_the_build_pushed_and_which_ci_its_project_has(
    world: World,
) -> None:
    t1, t2, t3 = task(), task(), task()
    b1 = await world.add_build(t1)
    await world.add_build(t2, pushed=False)
    await world.add_build(t3, ci=None)
    one = await world.store.candidate(t1)
    assert one is not None
    assert (one.build_id, one.task_id, one.pushed, one.ci_provider) == (b1, t1, True, "woodpecker")
    two, three = await world.store.candidate(t2), await world.store.candidate(t3)
    assert two is not None and two.pushed is False
    assert three is not None and three.ci_provider == "none"
    assert await world.store.candidate("t_missing") is None


async def test_a_build_is_linked_once_and_gets_its_initial_ci(world: World) -> None:
    build_id = await world.add_build(task())
    ci = CIProgress.searching("woodpecker", sha(1))
    deadline = datetime.now(UTC) + hours(1)
    assert await world.store.start(build_id, sha(1), ci=ci, deadline_at=deadline) is True
    assert await world.store.start(build_id, sha(2), ci=ci, deadline_at=deadline) is False
    assert await world.build_ci(build_id) == ci.to_json()
    [work] = await world.store.claim_due(lease_seconds=60)
    assert (work.build_id, work.commit_sha, work.state) == (build_id, sha(1), CILinkState.SEARCHING)
    assert work.checks == 0 and work.ci == ci
    assert abs(work.deadline_at - deadline) < timedelta(seconds=1)


async def test_the_work_carries_the_projects_ci_with_the_token_kept_secret(world: World) -> None:
    await linked(world)
    [work] = await world.store.claim_due(lease_seconds=60)
    assert work.project_ci == CI
    assert "wp-token-123456" not in repr(work)
    assert work.project_ci.provider_settings().token == "wp-token-123456"


async def test_a_due_link_is_leased_to_one_linker_at_a_time(world: World) -> None:
    ids = await linked(world, 3)
    first, second = await asyncio.gather(
        world.store.claim_due(lease_seconds=60), world.store.claim_due(lease_seconds=60)
    )
    got = [w.build_id for w in first] + [w.build_id for w in second]
    assert sorted(got) == sorted(ids)  # each link handed out exactly once
    assert await world.store.claim_due(lease_seconds=60) == []


async def test_a_lease_that_ran_out_is_taken_again_and_the_old_holder_writes_nothing(
    world: World,
) -> None:
    [build_id] = await linked(world)
    [stale] = await world.store.claim_due(lease_seconds=-1)  # already expired
    [fresh] = await world.store.claim_due(lease_seconds=60)
    assert fresh.build_id == build_id and fresh.lease != stale.lease
    gone = CIProgress.searching("woodpecker", sha(0)).given_up("unknown", "stale")
    lost = LinkOutcome(CILinkState.GAVE_UP, gone, datetime.now(UTC), 0)
    assert await world.store.record(stale, lost) is False
    assert (await world.build_ci(build_id) or {})["status"] == "searching"
    kept = LinkOutcome(CILinkState.SEARCHING, fresh.ci, datetime.now(UTC) - hours(1), 1)
    assert await world.store.record(fresh, kept) is True
    [again] = await world.store.claim_due(lease_seconds=60)
    assert again.checks == 1 and again.state == CILinkState.SEARCHING


async def test_due_links_come_earliest_first_and_later_ones_wait(world: World) -> None:
    a, b, c, d = await linked(world, 4)
    now = datetime.now(UTC)
    due = {a: now - hours(1), b: now - hours(3), c: now - hours(2), d: now + hours(1)}
    for work in await world.store.claim_due(lease_seconds=60):
        outcome = LinkOutcome(CILinkState.SEARCHING, work.ci, due[work.build_id], 1)
        assert await world.store.record(work, outcome)
    first = await world.store.claim_due(lease_seconds=60, limit=2)
    assert [w.build_id for w in first] == [b, c]
    assert [w.build_id for w in await world.store.claim_due(lease_seconds=60)] == [a]
    assert await world.store.claim_due(lease_seconds=60) == []  # d is not due for an hour


async def test_an_outcome_stores_state_ci_and_event_together_and_a_closed_link_stays_closed(
    world: World,
) -> None:
    [build_id] = await linked(world, wanted=CI_EVENTS)
    [work] = await world.store.claim_due(lease_seconds=60)
    failed = replace(work.ci, pipeline_number=7, status="failure", failed_steps=("test",))
    outcome = LinkOutcome(
        CILinkState.DONE, failed, datetime.now(UTC) - hours(1), 0, "build.ci_failed"
    )
    assert await world.store.record(work, outcome) is True
    assert await world.build_ci(build_id) == failed.to_json()
    assert await world.events(build_id) == ["build.ci_failed"]
    assert await world.store.claim_due(lease_seconds=60) == []
    assert await world.store.next_due() is None


async def test_an_event_the_build_did_not_ask_for_is_not_queued(world: World) -> None:
    [build_id] = await linked(world)  # no callback events asked for
    [work] = await world.store.claim_due(lease_seconds=60)
    done = LinkOutcome(CILinkState.DONE, work.ci, datetime.now(UTC), 0, "build.ci_passed")
    assert await world.store.record(work, done) is True
    assert await world.events(build_id) == []


async def test_next_due_is_when_the_earliest_open_link_is_due(world: World) -> None:
    assert await world.store.next_due() is None
    a, b, c = await linked(world, 3)
    now = datetime.now(UTC)
    due = {a: now + hours(2), b: now + hours(1), c: now - hours(5)}
    for work in await world.store.claim_due(lease_seconds=60):
        state = CILinkState.GAVE_UP if work.build_id == c else CILinkState.FOLLOWING
        assert await world.store.record(work, LinkOutcome(state, work.ci, due[work.build_id], 0))
    got = await world.store.next_due()
    assert got is not None and abs(got - due[b]) < timedelta(seconds=1)  # c is closed
    assert await world.store.claim_due(lease_seconds=60) == []
