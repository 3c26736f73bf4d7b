"""The webhook dispatcher's rules on the in-memory delivery store, with a scripted sender and a
hand-moved clock.

A 2xx delivers; a permanent failure is dead at once; anything else is retried after
``delay(attempt)`` until ``max_attempts``, then dead; every attempt of a delivery has the
same id and body; a redelivery starts a new cycle. No database, no HTTP, no sleeping: a
retry becomes due only when the test moves the clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from rdev.domain.auth import Principal
from rdev.domain.errors import Forbidden
from rdev.ports.deliveries import DeliveryState
from rdev.ports.webhooks import DeliveryAttemptOutcome
from rdev.services.webhooks import WebhookService
from tests.fakes.deliveries import FakeDeliveryStore

PENDING, DELIVERED, DEAD = DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.DEAD


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def answer(status: int | None, *, permanent: bool = False) -> DeliveryAttemptOutcome:
    ok = status is not None and 200 <= status < 300
    return DeliveryAttemptOutcome(
        ok=ok,
        status_code=status,
        error=None if ok else (f"HTTP {status}" if status else "connection refused"),
        latency_ms=3,
        response_excerpt="ok" if ok else None,
        permanent=permanent,
    )


@dataclass
class ScriptedSender:
    """Answers with ``script`` in order (the last answer repeats); records every send."""

    script: list[DeliveryAttemptOutcome | Exception] = field(default_factory=list)
    sent: list[tuple[str, str, bytes, str]] = field(default_factory=list)

    async def send(
        self, url: str, delivery_id: str, body: bytes, secret: str
    ) -> DeliveryAttemptOutcome:
        self.sent.append((url, delivery_id, body, secret))
        step = self.script[min(len(self.sent), len(self.script)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    async def check_url(self, url: str) -> object:
        return None


@dataclass
class Rig:
    clock: Clock
    store: FakeDeliveryStore
    sender: ScriptedSender
    service: WebhookService
    outcomes: list[str]

    async def dispatch(self) -> int:
        """One dispatcher pass, waiting until its sends are settled."""
        n = await self.service.dispatch_due()
        await self.service.join()
        return n


def make_rig(*script: DeliveryAttemptOutcome | Exception, max_attempts: int = 3) -> Rig:
    clock = Clock()
    store = FakeDeliveryStore(clock=clock)
    sender = ScriptedSender(list(script))
    outcomes: list[str] = []
    service = WebhookService(
        store=store,
        sender=sender,
        delay=lambda attempt: 10.0 * attempt,
        max_attempts=max_attempts,
        timeout=10,
        concurrency=4,
        on_attempt=outcomes.append,
        clock=clock,
    )
    return Rig(clock, store, sender, service, outcomes)


def one_delivery(rig: Rig, task_id: str = "t1", *, secret: str | None = "whsec_test") -> str:
    rig.store.add_build(task_id, secret=secret)
    return rig.store.add_delivery(task_id, payload='{"type":"build.completed"}')


async def test_a_2xx_answer_delivers_with_one_attempt() -> None:
    rig = make_rig(answer(204))
    delivery_id = one_delivery(rig)
    assert await rig.dispatch() == 1
    d = await rig.store.get(delivery_id)
    assert (d.state, d.attempts, d.last_error) == (DELIVERED, 1, None)
    assert d.delivered_at == rig.clock.now
    assert rig.outcomes == ["delivered"]
    assert await rig.dispatch() == 0


async def test_failures_are_retried_on_the_schedule_and_dead_after_max_attempts() -> None:
    rig = make_rig(answer(500))
    delivery_id = one_delivery(rig)
    start = rig.clock.now
    assert await rig.dispatch() == 1
    d = await rig.store.get(delivery_id)
    assert (d.state, d.attempts, d.next_attempt_at) == (PENDING, 1, start + timedelta(seconds=10))
    rig.clock.advance(9.9)
    assert await rig.dispatch() == 0  # not due yet
    rig.clock.advance(0.1)
    assert await rig.dispatch() == 1
    d = await rig.store.get(delivery_id)
    assert (d.state, d.attempts) == (PENDING, 2)
    assert d.next_attempt_at == rig.clock.now + timedelta(seconds=20)  # delay(2)
    rig.clock.advance(20)
    assert await rig.dispatch() == 1
    d = await rig.store.get(delivery_id)
    assert (d.state, d.attempts, d.last_error) == (DEAD, 3, "HTTP 500")
    assert rig.outcomes == ["retry", "retry", "dead"]
    rig.clock.advance(3600)
    assert await rig.dispatch() == 0  # dead: never again
    assert len(d.attempt_log) == 3


@pytest.mark.parametrize("status", [410, None])
async def test_a_permanent_failure_is_dead_at_once(status: int | None) -> None:
    rig = make_rig(answer(status, permanent=True), max_attempts=12)
    delivery_id = one_delivery(rig)
    await rig.dispatch()
    d = await rig.store.get(delivery_id)
    assert (d.state, d.attempts) == (DEAD, 1)
    assert rig.outcomes == ["dead"]


async def test_every_attempt_sends_the_same_id_body_and_secret() -> None:
    rig = make_rig(answer(503), answer(503), answer(200))
    delivery_id = one_delivery(rig, secret="whsec_abc123")
    for _ in range(3):
        await rig.dispatch()
        rig.clock.advance(60)
    assert (
        rig.sender.sent
        == [("http://127.0.0.1:9/hook", delivery_id, b'{"type":"build.completed"}', "whsec_abc123")]
        * 3
    )
    assert (await rig.store.get(delivery_id)).state == DELIVERED


async def test_without_a_secret_nothing_is_sent_and_the_attempt_fails() -> None:
    rig = make_rig(answer(200))
    delivery_id = one_delivery(rig, secret=None)
    await rig.dispatch()
    d = await rig.store.get(delivery_id)
    assert rig.sender.sent == []
    assert d.state == PENDING and d.attempts == 1
    assert d.last_error is not None and "no webhook secret" in d.last_error


async def test_a_sender_that_breaks_is_a_failed_attempt_and_retried() -> None:
    rig = make_rig(RuntimeError("boom"), answer(200))
    delivery_id = one_delivery(rig)
    await rig.dispatch()
    d = await rig.store.get(delivery_id)
    assert d.state == PENDING and d.last_error == "internal error (RuntimeError)"
    rig.clock.advance(10)
    await rig.dispatch()
    assert (await rig.store.get(delivery_id)).state == DELIVERED


async def test_no_more_sends_at_once_than_the_concurrency() -> None:
    rig = make_rig(answer(200))
    rig.store.add_build("t1")
    ids = [rig.store.add_delivery("t1") for _ in range(6)]
    assert await rig.dispatch() == 4
    assert await rig.dispatch() == 2
    assert {(await rig.store.get(i)).state for i in ids} == {DELIVERED}


async def test_a_redelivery_is_a_new_cycle_of_the_same_delivery_for_its_project_only() -> None:
    rig = make_rig(answer(500), answer(200), max_attempts=1)
    delivery_id = one_delivery(rig)
    await rig.dispatch()
    assert (await rig.store.get(delivery_id)).state == DEAD
    admin = Principal("t0", "admin", frozenset({"admin"}))
    other = Principal("t1", "bot", frozenset({"builds:write"}), frozenset({"elsewhere"}))
    with pytest.raises(Forbidden):
        await rig.service.redeliver(other, delivery_id)
    again = await rig.service.redeliver(admin, delivery_id)
    assert (again.id, again.state, again.attempts) == (delivery_id, PENDING, 0)
    await rig.dispatch()
    d = await rig.store.get(delivery_id)
    assert (d.state, d.attempts, len(d.attempt_log)) == (DELIVERED, 1, 2)
    [listed] = await rig.service.list_for_build(admin, "t1")
    assert listed.id == delivery_id
    with pytest.raises(Forbidden):
        await rig.service.list_for_build(other, "t1")


class HangingSender:
    """Never answers; ``started`` is set once a send is in flight."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def send(
        self, url: str, delivery_id: str, body: bytes, secret: str
    ) -> DeliveryAttemptOutcome:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def check_url(self, url: str) -> object:
        return None


async def test_stopping_the_dispatcher_hands_the_leases_of_sends_in_flight_back() -> None:
    clock = Clock()
    store = FakeDeliveryStore(clock=clock)
    sender = HangingSender()
    service = WebhookService(
        store=store, sender=sender, delay=lambda _: 1.0, max_attempts=3, timeout=3600, clock=clock
    )
    store.add_build("t1")
    delivery_id = store.add_delivery("t1")
    stop = asyncio.Event()
    loop = asyncio.create_task(service.run(stop))
    await asyncio.wait_for(sender.started.wait(), 60)
    assert (await store.get(delivery_id)).locked_until is not None
    stop.set()
    await asyncio.wait_for(loop, 60)
    d = await store.get(delivery_id)
    assert (d.state, d.attempts, d.locked_until, d.attempt_log) == (PENDING, 0, None, ())
    assert [x.id for x in await store.claim_due(5, 60)] == [delivery_id]  # due again at once
