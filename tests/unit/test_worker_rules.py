"""The worker protocol's rules, on the in-memory stores: the claim's long-poll, the events a
claim and a result announce, task git credentials, retry and lease-loss decisions.

No database, no HTTP, no real waiting: the stores' clock and the service's clock are the
test's, moved by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rdev.domain.auth import Principal
from rdev.domain.errors import Forbidden, ShuttingDown, StaleLease
from rdev.domain.events import BuildFinished, BuildsClaimed, Event
from rdev.domain.models import BuildResult, BuildSpec, BuildStatus, ClaimedTask
from rdev.ports.credentials import ClaimCredentials
from rdev.ports.leases import LiveLease
from rdev.ports.queue import Completion
from rdev.services.events import EventBus
from rdev.services.repos import TASK_CREDENTIAL_PREFIX, TaskGitCredentials
from rdev.services.workers import WorkerService
from tests.fakes.builds import BuildData, FakeBuildStore
from tests.fakes.notifier import FakeClaimNotifier
from tests.fakes.queue import FakeWorkQueue
from tests.fakes.workers import FakeWorkerStore

WORKER = Principal("t-worker", "worker", frozenset({"workers:run"}))
LEASE_SECONDS = 60.0
RETRY_DELAY_SECONDS = 30.0


class Clock:
    """One hand-moved time for the stores (datetimes) and the service (monotonic seconds)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.start = self.now

    def utc(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - self.start).total_seconds()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class CountingQueue(FakeWorkQueue):
    """The fake queue, counting how often the service looked for work."""

    claims = 0

    async def claim(self, **kwargs: Any) -> list[ClaimedTask]:
        self.claims += 1
        return await super().claim(**kwargs)


class NoCredentials:
    async def add_credentials(self, tasks: Sequence[ClaimedTask]) -> list[ClaimedTask]:
        return list(tasks)


@dataclass
class World:
    clock: Clock
    data: BuildData
    notifier: FakeClaimNotifier
    builds: FakeBuildStore
    queue: CountingQueue
    workers: FakeWorkerStore
    service: WorkerService
    events: list[Event] = field(default_factory=list)

    async def submit(self, prompt: str = "do it", agent: str = "command") -> str:
        build, _ = await self.builds.submit(
            project_id="p1",
            spec=BuildSpec(prompt=prompt, agent=agent),
            agent=agent,
            labels=[],
            rendered_prompt=prompt,
            template_name=None,
            template_version=None,
            max_attempts=2,
            idempotency_key=None,
            actor="token:bot",
            project_name="demo",
        )
        return build.task_id

    async def register(
        self, name: str = "w1", agents: Sequence[str] = ("command",), slots: int = 2
    ) -> str:
        return await self.service.register(WORKER, name=name, agents=list(agents), slots=slots)

    async def status(self, task_id: str) -> BuildStatus:
        return (await self.builds.get(task_id)).status


def make_world(
    *,
    max_retryable_failures: int = 2,
    credentials: ClaimCredentials | None = None,
    repo_host: str | None = None,
) -> World:
    clock = Clock()
    data = BuildData(clock=clock.utc)
    data.add_project("p1", "demo", repo_host=repo_host)
    notifier = FakeClaimNotifier()
    bus = EventBus()
    workers = FakeWorkerStore(clock=clock.utc)
    queue = CountingQueue(data, notifier)
    service = WorkerService(
        workers=workers,
        queue=queue,
        notifier=notifier,
        events=bus,
        credentials=credentials or NoCredentials(),
        lease_seconds=LEASE_SECONDS,
        claim_wait_seconds=30.0,
        offline_after_seconds=30.0,
        retry_delay_seconds=RETRY_DELAY_SECONDS,
        max_retryable_failures=max_retryable_failures,
        clock=clock.monotonic,
    )
    world = World(clock, data, notifier, FakeBuildStore(data, notifier), queue, workers, service)

    async def record(event: BuildsClaimed | BuildFinished) -> None:
        world.events.append(event)

    bus.subscribe(BuildsClaimed, record)
    bus.subscribe(BuildFinished, record)
    return world


def finished(world: World) -> list[BuildFinished]:
    return [e for e in world.events if isinstance(e, BuildFinished)]


async def until_waiting(notifier: FakeClaimNotifier) -> None:
    """Let the claim task run until it is parked on its waiter (no wall clock involved)."""
    while not notifier._waiters:
        await asyncio.sleep(0)


# -- the claim's long-poll ----------------------------------------------------------------


async def test_a_claim_with_queued_work_answers_at_once_after_one_look() -> None:
    w = make_world()
    wid = await w.register()
    task_id = await w.submit()

    tasks = await w.service.claim(WORKER, wid, max_tasks=1, wait_seconds=30)

    assert [t.task_id for t in tasks] == [task_id]
    assert w.queue.claims == 1
    assert not w.notifier._waiters  # the waiter taken before the look is forgotten
    assert await w.status(task_id) == BuildStatus.RUNNING


async def test_a_claim_with_nothing_to_take_and_wait_zero_answers_empty_after_one_look() -> None:
    w = make_world()
    wid = await w.register()
    await w.submit(agent="opencode")  # queued, but not for an agent this worker offers

    assert await w.service.claim(WORKER, wid, max_tasks=4, wait_seconds=0) == []
    assert w.queue.claims == 1
    assert not w.notifier._waiters
    assert w.events == []


async def test_a_waiting_claim_answers_with_the_build_a_submit_woke_it_for() -> None:
    w = make_world()
    wid = await w.register()
    claim = asyncio.create_task(w.service.claim(WORKER, wid, max_tasks=1, wait_seconds=30))
    await until_waiting(w.notifier)

    task_id = await w.submit()

    assert [t.task_id for t in await claim] == [task_id]
    assert w.queue.claims == 2


async def test_a_waiting_claim_ends_with_shutting_down_when_the_server_drains() -> None:
    w = make_world()
    wid = await w.register()
    claim = asyncio.create_task(w.service.claim(WORKER, wid, max_tasks=1, wait_seconds=30))
    await until_waiting(w.notifier)

    w.service.drain()

    with pytest.raises(ShuttingDown):
        await claim
    with pytest.raises(ShuttingDown):  # and so does every later claim
        await w.service.claim(WORKER, wid, max_tasks=1, wait_seconds=0)


async def test_a_claim_takes_at_most_four_tasks_per_slot() -> None:
    w = make_world()
    wid = await w.register(slots=1)
    for n in range(6):
        await w.submit(prompt=f"build {n}")

    tasks = await w.service.claim(WORKER, wid, max_tasks=10, wait_seconds=0)

    assert len(tasks) == 4


async def test_a_worker_registering_again_is_claimed_for_by_its_new_agents_at_once() -> None:
    w = make_world()
    wid = await w.register(agents=("command",))
    await w.service.claim(WORKER, wid, max_tasks=1, wait_seconds=0)  # its registration cached
    task_id = await w.submit(agent="opencode")

    assert await w.register(agents=("opencode",)) == wid  # same name, same id
    assert [t.task_id for t in await w.service.claim(WORKER, wid, 1, 0)] == [task_id]


async def test_a_claim_without_the_workers_run_scope_is_forbidden() -> None:
    w = make_world()
    wid = await w.register()
    reader = Principal("t-read", "reader", frozenset({"builds:read"}))

    with pytest.raises(Forbidden):
        await w.service.claim(reader, wid, max_tasks=1, wait_seconds=0)


# -- what a claim announces, and the credentials it carries --------------------------------


async def test_a_claim_announces_builds_claimed_with_the_tasks_as_answered() -> None:
    minted: list[str] = []

    class Minting:
        async def add_credentials(self, tasks: Sequence[ClaimedTask]) -> list[ClaimedTask]:
            minted.extend(t.task_id for t in tasks)
            return [t.model_copy(update={"git_credential": "minted"}) for t in tasks]

    w = make_world(credentials=Minting())
    wid = await w.register()
    first, second = await w.submit(), await w.submit()

    tasks = await w.service.claim(WORKER, wid, max_tasks=2, wait_seconds=0)

    assert minted == [first, second]
    assert [t.git_credential for t in tasks] == ["minted", "minted"]
    assert w.events == [BuildsClaimed(tuple(tasks))]


async def test_claims_of_local_host_builds_get_a_task_credential_others_keep_their_own() -> None:
    class NoLeases:
        async def live_lease(self, task_id: str) -> LiveLease | None:
            return None

    credentials = TaskGitCredentials(NoLeases())
    w = make_world(credentials=credentials, repo_host="local")
    w.data.add_project("p2", "stored", repo_host="local", git_credential="stored-token")
    w.data.add_project("p3", "gitea", repo_host="gitea")
    wid = await w.register()
    local = await w.submit()
    for pid in ("p2", "p3"):
        build, _ = await w.builds.submit(
            project_id=pid,
            spec=BuildSpec(prompt="x", agent="command"),
            agent="command",
            labels=[],
            rendered_prompt="x",
            template_name=None,
            template_version=None,
            max_attempts=2,
            idempotency_key=None,
            actor="token:bot",
        )

    tasks = {t.project.name: t for t in await w.service.claim(WORKER, wid, 3, 0)}

    assert tasks["demo"].task_id == local
    assert tasks["demo"].git_credential == credentials.mint(local, tasks["demo"].lease_token)
    assert tasks["demo"].git_credential.startswith(TASK_CREDENTIAL_PREFIX)
    assert tasks["stored"].git_credential == "stored-token"
    assert tasks["gitea"].git_credential is None


# -- results -------------------------------------------------------------------------------


async def test_complete_announces_build_finished_with_the_stored_status() -> None:
    w = make_world()
    wid = await w.register()
    await w.submit()
    [task] = await w.service.claim(WORKER, wid, 1, 0)
    result = BuildResult(success=True, output="done", duration_ms=1200)

    status = await w.service.complete(WORKER, wid, task.task_id, task.lease_token, result, None)

    assert status == BuildStatus.COMPLETED == await w.status(task.task_id)
    assert finished(w) == [BuildFinished(task.task_id, BuildStatus.COMPLETED, result)]


async def test_a_result_under_a_stale_lease_is_refused_and_announces_nothing() -> None:
    w = make_world()
    wid = await w.register()
    await w.submit()
    [task] = await w.service.claim(WORKER, wid, 1, 0)

    with pytest.raises(StaleLease):
        await w.service.complete(
            WORKER, wid, task.task_id, "not-the-token", BuildResult(success=True), None
        )

    assert await w.status(task.task_id) == BuildStatus.RUNNING
    assert finished(w) == []


async def test_a_batch_announces_one_build_finished_per_stored_result_only() -> None:
    w = make_world()
    wid = await w.register()
    await w.submit()
    await w.submit()
    ok, failed = await w.service.claim(WORKER, wid, 2, 0)
    done, broken = BuildResult(success=True), BuildResult(success=False, error="tests fail")

    outcomes = await w.service.complete_many(
        WORKER,
        wid,
        [
            Completion(ok.task_id, ok.lease_token, done),
            Completion(failed.task_id, failed.lease_token, broken),
            Completion(ok.task_id, ok.lease_token, done),  # answered twice: the second is stale
        ],
    )

    assert outcomes[:2] == [BuildStatus.COMPLETED, BuildStatus.FAILED]
    assert isinstance(outcomes[2], StaleLease)
    assert finished(w) == [
        BuildFinished(ok.task_id, BuildStatus.COMPLETED, done),
        BuildFinished(failed.task_id, BuildStatus.FAILED, broken),
    ]


async def test_a_retryable_failure_goes_back_to_pending_until_its_delay_ran_out() -> None:
    w = make_world()
    wid = await w.register()
    task_id = await w.submit()
    [task] = await w.service.claim(WORKER, wid, 1, 0)
    busy = BuildResult(success=False, error="429 from the model API", retryable=True)

    status = await w.service.complete(WORKER, wid, task_id, task.lease_token, busy, None)

    assert status == BuildStatus.PENDING == await w.status(task_id)
    assert finished(w) == [BuildFinished(task_id, BuildStatus.PENDING, busy)]
    w.clock.advance(RETRY_DELAY_SECONDS - 1)
    assert await w.service.claim(WORKER, wid, 1, 0) == []
    w.clock.advance(1)
    [again] = await w.service.claim(WORKER, wid, 1, 0)
    assert (again.task_id, again.attempt) == (task_id, 2)


async def test_a_retryable_failure_waits_the_delay_its_result_asks_for() -> None:
    w = make_world()
    wid = await w.register()
    task_id = await w.submit()
    [task] = await w.service.claim(WORKER, wid, 1, 0)
    busy = BuildResult(success=False, retryable=True, retry_after_seconds=5)

    await w.service.complete(WORKER, wid, task_id, task.lease_token, busy, None)

    w.clock.advance(4)
    assert await w.service.claim(WORKER, wid, 1, 0) == []
    w.clock.advance(1)
    assert [t.task_id for t in await w.service.claim(WORKER, wid, 1, 0)] == [task_id]


async def test_retryable_failures_beyond_the_budget_fail_the_build() -> None:
    w = make_world(max_retryable_failures=2)
    wid = await w.register()
    task_id = await w.submit()
    busy = BuildResult(success=False, error="529 overloaded", retryable=True)
    statuses = []
    for _ in range(3):
        [task] = await w.service.claim(WORKER, wid, 1, 0)
        statuses.append(
            await w.service.complete(WORKER, wid, task_id, task.lease_token, busy, None)
        )
        w.clock.advance(RETRY_DELAY_SECONDS)

    assert statuses == [BuildStatus.PENDING, BuildStatus.PENDING, BuildStatus.FAILED]
    assert [e.status for e in finished(w)] == statuses
    assert await w.service.claim(WORKER, wid, 1, 0) == []


async def test_a_cancelled_result_ends_the_build_even_when_marked_retryable() -> None:
    w = make_world()
    wid = await w.register()
    task_id = await w.submit()
    [task] = await w.service.claim(WORKER, wid, 1, 0)
    stopped = BuildResult(success=False, cancelled=True, retryable=True)

    status = await w.service.complete(WORKER, wid, task_id, task.lease_token, stopped, None)

    assert status == BuildStatus.CANCELLED


# -- leases ------------------------------------------------------------------------------


async def test_a_lost_lease_requeues_the_build_until_max_attempts_then_fails_it() -> None:
    w = make_world()  # builds here allow 2 attempts
    wid = await w.register()
    task_id = await w.submit()
    for attempt in (1, 2):
        [task] = await w.service.claim(WORKER, wid, 1, 0)
        assert task.attempt == attempt
        w.clock.advance(LEASE_SECONDS + 1)  # no heartbeat: the worker is gone
        assert await w.service.reap() == 1

    build = await w.builds.get(task_id)
    assert build.status == BuildStatus.FAILED
    assert build.result is not None and build.result.error == "worker lost"


async def test_a_lost_lease_of_a_build_asked_to_cancel_ends_it_cancelled() -> None:
    w = make_world()
    wid = await w.register()
    task_id = await w.submit()
    await w.service.claim(WORKER, wid, 1, 0)
    await w.builds.cancel(task_id, "token:bot")
    w.clock.advance(LEASE_SECONDS + 1)

    assert await w.service.reap() == 1
    assert await w.status(task_id) == BuildStatus.CANCELLED


async def test_a_heartbeat_extends_the_lease_and_brings_back_cancel_requests() -> None:
    w = make_world()
    wid = await w.register()
    task_id = await w.submit()
    [task] = await w.service.claim(WORKER, wid, 1, 0)
    await w.builds.cancel(task_id, "token:bot")
    w.clock.advance(LEASE_SECONDS - 1)

    leases, cancels = await w.service.heartbeat(WORKER, wid, {task_id: task.lease_token})
    w.clock.advance(LEASE_SECONDS - 1)

    assert leases[task_id] == w.clock.now + timedelta(seconds=1)
    assert cancels == [task_id]
    assert await w.service.reap() == 0  # still leased
    with pytest.raises(StaleLease):
        await w.service.heartbeat(WORKER, wid, {task_id: "not-the-token"})
