"""The IdempotencyStore contract, one suite run against the in-memory fake, SQLite and
PostgreSQL.

What create-and-build relies on: the first to reserve a key gets it; anyone else sees what
it holds (pending, or done with the stored answer and the first request's fingerprint); a
released key can be reserved again; a pending reservation older than ``stale_after`` (its
request died) is taken over, a done one never. Time is an injected clock, moved by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rdev.adapters.db.idempotency import SqlIdempotencyStore
from rdev.ports.idempotency import IdempotencyStore, StoredAnswer
from tests.contract.databases import IMPLEMENTATIONS, migrated_database
from tests.fakes.idempotency import FakeIdempotencyStore

STALE_AFTER = 600.0


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    store: IdempotencyStore
    clock: Clock


def _fake(clock: Callable[[], datetime]) -> IdempotencyStore:
    return FakeIdempotencyStore(clock=clock, stale_after=STALE_AFTER)


@pytest.fixture(params=IMPLEMENTATIONS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    if request.param == "fake":
        yield World(_fake(clock), clock)
        return
    async with migrated_database(request.param, tmp_path) as db:
        yield World(SqlIdempotencyStore(db, stale_after=STALE_AFTER, clock=clock), clock)


async def test_the_first_reserve_gets_the_key_and_a_second_sees_it_pending(world: World) -> None:
    assert await world.store.reserve("k", "scope", "fp1") is None
    assert await world.store.reserve("k", "scope", "fp2") == StoredAnswer(
        state="pending", fingerprint="fp1"
    )


async def test_a_completed_key_gives_back_the_stored_answer_and_first_fingerprint(
    world: World,
) -> None:
    await world.store.reserve("k", "scope", "fp1")
    answer = {"task_id": "t1", "project": {"id": "p1", "labels": ["a"]}, "status": "pending"}
    await world.store.complete("k", "scope", "fp1", answer)
    stored = await world.store.reserve("k", "scope", "fp-other")
    assert stored == StoredAnswer(state="done", fingerprint="fp1", answer=answer)


async def test_a_released_key_can_be_reserved_again(world: World) -> None:
    await world.store.reserve("k", "scope", "fp1")
    await world.store.release("k", "scope")
    assert await world.store.reserve("k", "scope", "fp2") is None
    assert await world.store.reserve("k", "scope", "fp3") == StoredAnswer(
        state="pending", fingerprint="fp2"
    )


async def test_releasing_a_key_nobody_holds_is_no_error(world: World) -> None:
    await world.store.release("nobody", "scope")
    assert await world.store.reserve("nobody", "scope", "fp") is None


async def test_keys_are_per_scope(world: World) -> None:
    assert await world.store.reserve("k", "token-a", "fp") is None
    assert await world.store.reserve("k", "token-b", "fp") is None


async def test_a_stale_pending_reservation_is_taken_over_a_fresh_one_is_not(
    world: World,
) -> None:
    await world.store.reserve("k", "scope", "fp1")
    world.clock.advance(STALE_AFTER - 1)
    assert await world.store.reserve("k", "scope", "fp2") is not None
    world.clock.advance(2)
    assert await world.store.reserve("k", "scope", "fp2") is None
    assert await world.store.reserve("k", "scope", "fp3") == StoredAnswer(
        state="pending", fingerprint="fp2"
    )


async def test_a_done_key_never_goes_stale(world: World) -> None:
    await world.store.reserve("k", "scope", "fp1")
    await world.store.complete("k", "scope", "fp1", {"task_id": "t1"})
    world.clock.advance(STALE_AFTER * 10)
    stored = await world.store.reserve("k", "scope", "fp1")
    assert stored is not None and stored.state == "done"
    assert stored.answer == {"task_id": "t1"}
