"""The DeliveryStore contract, one suite run against the in-memory fake, SQLite and PostgreSQL.

What the dispatcher and the deliveries API rely on: due deliveries come earliest first and
are leased to one dispatcher at a time; an attempt is always recorded, but only the claim
that still holds the lease settles the state; a released lease is due again at once; a
redelivery starts a new cycle under the same id, refused while an attempt is in flight.

Due times are set hours apart from now, and expired leases are leases of negative length,
so no result depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest
import sqlalchemy as sa

from rdev.adapters.db.deliveries import SqlDeliveryStore
from rdev.adapters.db.engine import Database
from rdev.adapters.db.tables import builds, projects, webhook_deliveries
from rdev.domain.errors import Conflict, NotFound
from rdev.ports.deliveries import DeliveryAttempt, DeliveryState, DeliveryStore
from tests.contract.databases import IMPLEMENTATIONS, migrated_database
from tests.fakes.deliveries import FakeDeliveryStore

PENDING, DELIVERED, DEAD = DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.DEAD


class World(Protocol):
    """A store plus the seeding the port does not offer (the outbox writes the rows)."""

    store: DeliveryStore

    async def add_build(self, task_id: str, *, secret: str | None = "whsec_test") -> None: ...

    def second_store(self) -> DeliveryStore:
        """Another dispatcher's store over the same deliveries."""
        ...

    async def add_delivery(
        self, task_id: str, delivery_id: str, *, due: datetime, created_at: datetime
    ) -> None: ...


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeDeliveryStore()
        self.store: DeliveryStore = self.fake

    def second_store(self) -> DeliveryStore:
        return self.fake  # one process's memory: the same rows

    async def add_build(self, task_id: str, *, secret: str | None = "whsec_test") -> None:
        self.fake.add_build(
            task_id, project_id="p_" + task_id, project_name="n-" + task_id, secret=secret
        )

    async def add_delivery(
        self, task_id: str, delivery_id: str, *, due: datetime, created_at: datetime
    ) -> None:
        self.fake.add_delivery(
            task_id,
            delivery_id=delivery_id,
            payload=f'{{"id": "{delivery_id}"}}',
            next_attempt_at=due,
            created_at=created_at,
        )


class SqlWorld:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.store: DeliveryStore = SqlDeliveryStore(db)
        self.build_ids: dict[str, int] = {}

    def second_store(self) -> DeliveryStore:
        return SqlDeliveryStore(self.db)

    async def add_build(self, task_id: str, *, secret: str | None = "whsec_test") -> None:
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(projects).values(
                    id="p_" + task_id,
                    name="n-" + task_id,
                    repo_url="https://git.test/acme/shop.git",
                    default_branch="main",
                    labels=[],
                    settings={},
                    webhook_secret=secret,
                    created_at=now,
                    updated_at=now,
                )
            )
            res = await conn.execute(
                sa.insert(builds)
                .values(
                    task_id=task_id,
                    project_id="p_" + task_id,
                    status="completed",
                    spec={"prompt": "do it", "callback_url": "http://127.0.0.1:9/hook"},
                    attempts=1,
                    max_attempts=3,
                    retries=0,
                    cancel_requested=False,
                    created_at=now,
                )
                .returning(builds.c.id)
            )
            self.build_ids[task_id] = int(res.scalar_one())

    async def add_delivery(
        self, task_id: str, delivery_id: str, *, due: datetime, created_at: datetime
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(webhook_deliveries).values(
                    id=delivery_id,
                    build_id=self.build_ids[task_id],
                    event="build.completed",
                    url="http://127.0.0.1:9/hook",
                    payload=f'{{"id": "{delivery_id}"}}',
                    state="pending",
                    attempts=0,
                    next_attempt_at=due,
                    created_at=created_at,
                )
            )


@pytest.fixture(params=IMPLEMENTATIONS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "fake":
        yield FakeWorld()
        return
    async with migrated_database(request.param, tmp_path) as db:
        yield SqlWorld(db)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def attempt(status_code: int | None = 200, error: str | None = None) -> DeliveryAttempt:
    return DeliveryAttempt(
        at=datetime.now(UTC),
        status_code=status_code,
        error=error,
        latency_ms=12,
        response_excerpt="ok" if error is None else None,
    )


async def seeded(
    world: World, *offsets_hours: float, secret: str | None = "whsec_test"
) -> tuple[str, list[str]]:
    """A build with one delivery per offset (due that many hours from now, created in this
    order); returns the task id and the delivery ids."""
    task_id = "t_" + uuid.uuid4().hex[:12]
    await world.add_build(task_id, secret=secret)
    now = datetime.now(UTC)
    ids = []
    for i, offset in enumerate(offsets_hours):
        delivery_id = f"msg_{task_id}_{i}"
        await world.add_delivery(
            task_id, delivery_id, due=now + hours(offset), created_at=now + timedelta(seconds=i)
        )
        ids.append(delivery_id)
    return task_id, ids


async def test_due_deliveries_come_earliest_first_and_later_ones_wait(world: World) -> None:
    _, (a, b, c, later) = await seeded(world, -1, -3, -2, 1)
    first = await world.store.claim_due(2, 60)
    assert [d.id for d in first] == [b, c]
    assert [d.id for d in await world.store.claim_due(10, 60)] == [a]
    assert await world.store.claim_due(10, 60) == []  # ``later`` is due in an hour
    assert await world.store.claim_due(0, 60) == []


async def test_a_claim_carries_what_the_attempt_needs(world: World) -> None:
    task_id, [one] = await seeded(world, -1)
    [d] = await world.store.claim_due(5, 60)
    assert (d.id, d.task_id, d.event, d.url, d.attempts) == (
        one,
        task_id,
        "build.completed",
        "http://127.0.0.1:9/hook",
        0,
    )
    assert d.payload == f'{{"id": "{one}"}}'
    assert d.secret is not None and d.secret.get_secret_value() == "whsec_test"
    assert "whsec_test" not in repr(d)
    _, [none] = await seeded(world, -1, secret=None)
    [d2] = await world.store.claim_due(5, 60)
    assert d2.id == none and d2.secret is None


async def test_two_dispatchers_never_take_the_same_delivery(world: World) -> None:
    _, ids = await seeded(world, -1, -1, -2, -3, -4)
    other = world.second_store()
    first, second = await asyncio.gather(world.store.claim_due(3, 60), other.claim_due(3, 60))
    got = [d.id for d in first] + [d.id for d in second]
    assert sorted(got) == sorted(ids)
    assert await world.store.claim_due(10, 60) == []  # all leased


async def test_only_the_claim_holding_the_lease_settles_but_every_attempt_is_recorded(
    world: World,
) -> None:
    _, [one] = await seeded(world, -1)
    [stale] = await world.store.claim_due(1, -1)  # a lease that already ran out
    [fresh] = await world.store.claim_due(1, 60)
    assert fresh.lease != stale.lease
    lost = await world.store.settle(
        one, stale.lease, attempt(500, "HTTP 500"), state=DEAD, attempts=1, next_attempt_at=None
    )
    assert lost is False
    kept = await world.store.settle(
        one, fresh.lease, attempt(200), state=DELIVERED, attempts=1, next_attempt_at=None
    )
    assert kept is True
    d = await world.store.get(one)
    assert d.state == DELIVERED and d.attempts == 1 and d.locked_until is None
    assert d.last_error is None and d.delivered_at == d.attempt_log[-1].at
    assert [a.status_code for a in d.attempt_log] == [500, 200]
    assert await world.store.claim_due(1, 60) == []  # delivered: never claimed again


async def test_a_retry_is_due_at_its_time_and_a_dead_delivery_never_again(world: World) -> None:
    _, [retry, dead] = await seeded(world, -2, -1)
    claimed = {d.id: d for d in await world.store.claim_due(5, 60)}
    later = datetime.now(UTC) + hours(1)
    assert await world.store.settle(
        retry,
        claimed[retry].lease,
        attempt(503, "HTTP 503"),
        state=PENDING,
        attempts=1,
        next_attempt_at=later,
    )
    assert await world.store.settle(
        dead,
        claimed[dead].lease,
        attempt(410, "HTTP 410"),
        state=DEAD,
        attempts=1,
        next_attempt_at=None,
    )
    r = await world.store.get(retry)
    assert r.state == PENDING and r.attempts == 1 and r.last_error == "HTTP 503"
    assert r.next_attempt_at is not None and abs(r.next_attempt_at - later) < timedelta(seconds=1)
    assert (await world.store.get(dead)).state == DEAD
    assert await world.store.claim_due(5, 60) == []


async def test_a_released_lease_is_due_again_at_once_and_a_foreign_one_is_ignored(
    world: World,
) -> None:
    _, [a, b] = await seeded(world, -2, -1)
    claimed = {d.id: d for d in await world.store.claim_due(5, 60)}
    await world.store.release({a: claimed[a].lease, b: claimed[b].lease - timedelta(seconds=1)})
    assert [d.id for d in await world.store.claim_due(5, 60)] == [a]
    await world.store.release({})


async def test_a_redelivery_is_a_new_cycle_under_the_same_id_refused_while_in_flight(
    world: World,
) -> None:
    _, [one] = await seeded(world, -1)
    [d] = await world.store.claim_due(1, 60)
    with pytest.raises(Conflict):
        await world.store.redeliver(one)
    await world.store.settle(
        one, d.lease, attempt(200), state=DELIVERED, attempts=1, next_attempt_at=None
    )
    await world.store.redeliver(one)
    again = await world.store.get(one)
    assert again.state == PENDING and again.attempts == 0 and again.delivered_at is None
    assert len(again.attempt_log) == 1  # history stays
    [d2] = await world.store.claim_due(1, 60)
    assert d2.id == one and d2.payload == d.payload and d2.attempts == 0
    with pytest.raises(NotFound):
        await world.store.redeliver("msg_missing")


async def test_a_builds_deliveries_are_listed_oldest_first_with_their_attempts(
    world: World,
) -> None:
    task_id, [a, b] = await seeded(world, 1, -1)
    [d] = await world.store.claim_due(5, 60)
    await world.store.settle(
        b,
        d.lease,
        attempt(None, "connection refused"),
        state=PENDING,
        attempts=1,
        next_attempt_at=datetime.now(UTC) + hours(1),
    )
    owner, items = await world.store.for_build(task_id)
    assert (owner.task_id, owner.project_id, owner.project_name) == (
        task_id,
        "p_" + task_id,
        "n-" + task_id,
    )
    assert [i.id for i in items] == [a, b]
    assert items[0].attempt_log == () and items[0].build_id == items[1].build_id
    assert [x.error for x in items[1].attempt_log] == ["connection refused"]
    one = await world.store.get(b)
    assert (one.task_id, one.project_name, one.event) == (
        task_id,
        "n-" + task_id,
        "build.completed",
    )
    with pytest.raises(NotFound):
        await world.store.for_build("t_missing")
    with pytest.raises(NotFound):
        await world.store.get("msg_missing")
