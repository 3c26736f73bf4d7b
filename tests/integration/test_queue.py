"""The work queue against real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
import sqlalchemy as sa

import rdev.services.workers
from rdev.bootstrap import build_container
from rdev.domain.models import BuildResult, BuildSpec
from tests.conftest import ADMIN_TOKEN


async def _project_id(container) -> str:
    p = await container.projects.store.create(
        name="q", repo_url="file:///x", default_branch="main", git_credential=None
    )
    return str(p.id)


async def _submit_many(container, project_id: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        b, _ = await container.builds.builds.submit(
            project_id=project_id,
            spec=BuildSpec(prompt=f"task {i}", agent="command"),
            agent="command",
            labels=[],
            rendered_prompt=f"task {i}",
            template_name=None,
            template_version=None,
            max_attempts=3,
            idempotency_key=None,
            actor="test",
        )
        ids.append(b.task_id)
    return ids


async def test_fifty_concurrent_claimers_take_every_task_exactly_once(container):
    project_id = await _project_id(container)
    ids = await _submit_many(container, project_id, 500)
    queue = container.queue
    claimed: list[str] = []

    async def claimer(i: int) -> None:
        idle = 0
        while idle < 3:
            got = await queue.claim(
                worker_id=f"w{i}",
                worker_name=f"w{i}",
                agents=["command"],
                labels=[],
                max_tasks=4,
                lease_seconds=60,
            )
            if not got:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            claimed.extend(t.task_id for t in got)

    await asyncio.gather(*(claimer(i) for i in range(50)))
    counts = Counter(claimed)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    assert (await queue.queue_stats())["depth"] == 0


async def test_claim_matches_agent_and_labels(container):
    project_id = await _project_id(container)
    b, _ = await container.builds.builds.submit(
        project_id=project_id,
        spec=BuildSpec(prompt="x", agent="opencode", labels=["gpu"]),
        agent="opencode",
        labels=["gpu"],
        rendered_prompt="x",
        template_name=None,
        template_version=None,
        max_attempts=3,
        idempotency_key=None,
        actor="test",
    )
    q = container.queue
    assert (
        await q.claim(
            worker_id="a",
            worker_name="a",
            agents=["command"],
            labels=["gpu"],
            max_tasks=1,
            lease_seconds=60,
        )
        == []
    )
    assert (
        await q.claim(
            worker_id="a",
            worker_name="a",
            agents=["opencode"],
            labels=[],
            max_tasks=1,
            lease_seconds=60,
        )
        == []
    )
    [t] = await q.claim(
        worker_id="a",
        worker_name="a",
        agents=["opencode"],
        labels=["gpu", "big"],
        max_tasks=1,
        lease_seconds=60,
    )
    assert t.task_id == b.task_id


async def test_restart_keeps_pending_builds_claimable(settings):
    first = build_container(settings)
    await first.start()
    project_id = await _project_id(first)
    ids = await _submit_many(first, project_id, 5)
    await first.stop()

    second = build_container(settings)  # a new "process" on the same database
    await second.start()
    try:
        got = await second.queue.claim(
            worker_id="w",
            worker_name="w",
            agents=["command"],
            labels=[],
            max_tasks=10,
            lease_seconds=60,
        )
        assert sorted(t.task_id for t in got) == sorted(ids)
    finally:
        await second.stop()


async def until(what: str, check, limit: float = 60.0) -> None:
    """Poll ``check()`` until true; only a failure waits ``limit`` s."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"never happened within {limit}s: {what}"
        await asyncio.sleep(0.01)


def without_the_claims_own_fallback_look(monkeypatch) -> None:
    """A waiting claim looks again on its own only after an hour: whatever it returns within
    the test's bound came from a wake-up."""
    monkeypatch.setattr(rdev.services.workers, "FALLBACK_RECHECK_SECONDS", 3600.0)


async def test_waiting_claim_wakes_on_submit_without_polling_delay(client, container, monkeypatch):
    from tests.factories import create_project, register_worker, submit

    without_the_claims_own_fallback_look(monkeypatch)
    container.notifier._rechecker.cancel()  # and no periodic re-check either: only the submit
    p = await create_project(client)
    wid = await register_worker(client)
    claim = asyncio.create_task(
        client.post(f"/workers/{wid}/claim", json={"max_tasks": 1, "wait_seconds": 60})
    )
    await until("the claim waits", lambda: container.notifier._waiters)
    assert not claim.done()
    b = await submit(client, p["name"])
    # Unwoken, the claim would answer after its full 60 s: the bound is half of that.
    r = await asyncio.wait_for(claim, 30)
    assert r.json()[0]["task_id"] == b["task_id"]


async def test_result_of_complete_is_stored(container):
    project_id = await _project_id(container)
    [tid] = await _submit_many(container, project_id, 1)
    [t] = await container.queue.claim(
        worker_id="w", worker_name="w", agents=["command"], labels=[], max_tasks=1, lease_seconds=60
    )
    await container.queue.complete(
        task_id=tid,
        lease_token=t.lease_token,
        result=BuildResult(success=True, output="done", commit_sha="abc"),
        agent_info={},
        worker_name="w",
        retry_delay_seconds=1,
        max_retryable_failures=1,
    )
    b = await container.builds.builds.get(tid)
    assert b.status == "completed" and b.result.commit_sha == "abc"
    assert ADMIN_TOKEN  # conftest admin token is in use by the container


async def test_a_mixed_batch_of_results_answers_each_item_on_its_own(container):
    from rdev.domain.errors import NotFound, StaleLease
    from rdev.ports.queue import Completion

    project_id = await _project_id(container)
    ids = await _submit_many(container, project_id, 5)
    tasks = await container.queue.claim(
        worker_id="w", worker_name="w", agents=["command"], labels=[], max_tasks=5, lease_seconds=60
    )
    lease = {t.task_id: t.lease_token for t in tasks}
    ok, bad, stop, flaky, stale = ids
    items = [
        Completion(ok, lease[ok], BuildResult(success=True, output="done"), {"cli_version": "1"}),
        Completion(bad, lease[bad], BuildResult(success=False, error="tests failed")),
        Completion(stop, lease[stop], BuildResult(success=False, cancelled=True)),
        Completion(flaky, lease[flaky], BuildResult(success=False, retryable=True, error="429")),
        Completion(stale, lease[stale] + "x", BuildResult(success=True)),
        Completion("no-such-task", "whatever", BuildResult(success=True)),
        Completion(ok, lease[ok], BuildResult(success=False, error="a second answer")),
    ]
    outcomes = await container.queue.complete_many(
        items, worker_name="w", retry_delay_seconds=60, max_retryable_failures=2
    )
    assert outcomes[:4] == ["completed", "failed", "cancelled", "pending"]
    assert isinstance(outcomes[4], StaleLease)
    assert isinstance(outcomes[5], NotFound)
    assert isinstance(outcomes[6], StaleLease)  # the first answer for a lease wins

    store = container.builds.builds
    first = await store.get(ok)
    assert first.status == "completed" and first.result.output == "done"
    assert first.agent_info == {"agent": "command", "cli_version": "1"}
    assert (await store.get(bad)).result.error == "tests failed"
    assert (await store.get(stop)).status == "cancelled"
    assert (await store.get(flaky)).status == "pending"  # back in the queue, later
    assert (await store.get(stale)).status == "running"  # its lease is still live
    events = [(e.from_status, e.to_status, e.actor) for e in await store.events(ok)]
    assert events == [
        (None, "pending", "test"),
        ("pending", "running", "worker:w"),
        ("running", "completed", "worker:w"),
    ]
    # The stale item changed nothing: its real lease can still report.
    assert await container.queue.complete_many(
        [Completion(stale, lease[stale], BuildResult(success=True))],
        worker_name="w",
        retry_delay_seconds=60,
        max_retryable_failures=2,
    ) == ["completed"]


async def test_a_retry_coming_due_reaches_a_waiting_claimer_without_a_new_submit(
    client, container, monkeypatch
):
    from tests.factories import create_project, register_worker, submit

    without_the_claims_own_fallback_look(monkeypatch)
    p = await create_project(client)
    b = await submit(client, p["name"])
    wid = await register_worker(client)
    [task] = (
        await client.post(f"/workers/{wid}/claim", json={"max_tasks": 1, "wait_seconds": 2})
    ).json()
    r = await client.post(
        f"/workers/{wid}/complete/{b['task_id']}",
        json={
            "lease_token": task["lease_token"],
            "result": {"success": False, "retryable": True, "retry_after_seconds": 1},
        },
    )
    assert r.json()["status"] == "pending"
    # Nobody announces the retry and the claim's own look comes only at its end (60 s): the
    # notifier's periodic re-check must find it. The bound is half the claim's wait.
    again = await asyncio.wait_for(
        client.post(f"/workers/{wid}/claim", json={"max_tasks": 1, "wait_seconds": 60}), 30
    )
    assert [t["task_id"] for t in again.json()] == [b["task_id"]]


@pytest.mark.parametrize("backend", ["postgresql"])  # LISTEN/NOTIFY is PostgreSQL's
async def test_a_replica_listens_for_claims_and_live_logs_on_one_connection(container, backend):
    """One LISTEN connection per replica carries both wake-ups: other replicas' work
    notifications wake waiting claimers, their log notifications wake live streams."""
    db = container.db
    channel = db.dialect.notify_channel
    container.live.snapshot()  # the first live stream subscribes to log notifications

    async def listening() -> list[str]:
        async with db.read() as conn:
            rows = await conn.execute(
                sa.text("SELECT query FROM pg_stat_activity WHERE query LIKE :q"),
                {"q": f'LISTEN "{channel}%'},
            )
            return [r[0] for r in rows]

    want = [f'LISTEN "{channel}_log"']  # the last of its LISTENs, after the work channel's
    deadline = asyncio.get_running_loop().time() + 30
    while (got := await listening()) != want:
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.05)
    waiter = container.notifier.waiter(["command"], [])
    async with db.write() as conn:
        await db.dialect.notify_work(conn)  # as another replica's reaper would
    await asyncio.wait_for(waiter.event.wait(), 30)
    stream = container.live.snapshot()
    async with db.write() as conn:
        await db.dialect.notify_logs(conn)  # as another replica's log append would
    await asyncio.wait_for(stream.wait(), 30)
    assert await listening() == want
