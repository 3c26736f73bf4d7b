"""The WorkQueue contract, one suite run against the in-memory fake, SQLite and PostgreSQL.

What the worker protocol relies on: claims take the oldest claimable builds an offered
agent and label set can run, each once, under a lease token; only the token's holder may
heartbeat, append logs or complete; a retryable failure is queued again while retries
last; the reaper takes back expired leases. Expired leases are leases of negative length
and retry delays are zero or hours, so no result depends on how fast the machine is.
"""

from __future__ import annotations

import pytest

from rdev.domain.errors import IllegalTransition, NotFound, StaleLease
from rdev.domain.models import BuildResult, BuildStatus, ClaimedTask
from rdev.ports.queue import Completion
from tests.contract.build_worlds import World, world

__all__ = ["world"]

OK = BuildResult(success=True, output="done")


async def claim(
    w: World,
    *,
    agents: list[str] | None = None,
    labels: list[str] | None = None,
    n: int = 10,
    lease: float = 600,
    worker: str = "w1",
) -> list[ClaimedTask]:
    return await w.queue.claim(
        worker_id=worker,
        worker_name=worker,
        agents=agents or ["command"],
        labels=labels or [],
        max_tasks=n,
        lease_seconds=lease,
    )


async def complete(
    w: World, task: ClaimedTask, result: BuildResult = OK, *, retries: int = 2, delay: float = 0
) -> BuildStatus:
    return await w.queue.complete(
        task_id=task.task_id,
        lease_token=task.lease_token,
        result=result,
        agent_info={"model": "m1"},
        worker_name="w1",
        retry_delay_seconds=delay,
        max_retryable_failures=retries,
    )


async def test_claims_take_the_oldest_builds_first_up_to_the_batch_size(world: World) -> None:
    ids = [(await world.submit(prompt=f"task {i}")).task_id for i in range(5)]
    first = await claim(world, n=2)
    second = await claim(world, n=10)
    assert [t.task_id for t in first] == ids[:2]
    assert [t.task_id for t in second] == ids[2:]
    assert await claim(world) == []
    assert len({t.lease_token for t in first + second}) == 5


async def test_a_claim_matches_the_agent_and_needs_every_label_of_the_build(
    world: World,
) -> None:
    plain = await world.submit()
    gpu = await world.submit(labels=["gpu"])
    both = await world.submit(labels=["gpu", "linux"])
    other = await world.submit(agent="claude_code")
    assert await claim(world, agents=["opencode"]) == []
    assert [t.task_id for t in await claim(world, labels=["gpu"])] == [plain.task_id, gpu.task_id]
    assert [t.task_id for t in await claim(world, labels=["linux", "gpu", "x"])] == [both.task_id]
    assert [t.task_id for t in await claim(world, agents=["claude_code"])] == [other.task_id]


async def test_a_claimed_build_is_running_and_the_claim_carries_what_the_worker_needs(
    world: World,
) -> None:
    await world.add_project(
        "p2", "proj-p2", repo_url="file:///two", agent_settings={"model": "m"}, git_credential="s"
    )
    build = await world.submit("p2", prompt="hello")
    [task] = await claim(world, worker="w7")
    assert task.task_id == build.task_id and task.attempt == 1
    assert task.rendered_prompt == "hello" and task.spec.prompt == "hello"
    project = task.model_dump()["project"]
    assert project["id"] == "p2" and project["name"] == "proj-p2"
    assert project["repo_url"] == "file:///two" and project["agent_settings"] == {"model": "m"}
    assert task.git_credential == "s"
    assert task.queued_at is not None and task.lease_expires_at > task.queued_at
    got = await world.builds.get(build.task_id)
    assert got.status == BuildStatus.RUNNING and got.attempts == 1 and got.worker_id == "w7"
    events = await world.builds.events(build.task_id)
    assert [(e.to_status, e.reason) for e in events][-1] == (BuildStatus.RUNNING, "claimed")
    assert (await world.queue.queue_stats())["depth"] == 0


async def test_heartbeats_extend_only_leases_still_held_and_report_cancel_requests(
    world: World,
) -> None:
    a, b = await world.submit(), await world.submit()
    ta, tb = await claim(world)
    await world.builds.cancel(b.task_id, "someone")
    expiry, cancels = await world.queue.heartbeat(
        worker_id="w1",
        tasks={ta.task_id: ta.lease_token, tb.task_id: tb.lease_token},
        lease_seconds=900,
    )
    assert set(expiry) == {a.task_id, b.task_id} and cancels == [b.task_id]
    assert expiry[a.task_id] > ta.lease_expires_at
    with pytest.raises(StaleLease) as lost:
        await world.queue.heartbeat(
            worker_id="w1",
            tasks={ta.task_id: ta.lease_token, tb.task_id: "not-the-token"},
            lease_seconds=900,
        )
    assert lost.value.extra["lost_tasks"] == [tb.task_id]
    assert await world.queue.heartbeat(worker_id="w1", tasks={}, lease_seconds=9) == ({}, [])


async def test_log_chunks_get_sequence_numbers_and_a_resent_batch_is_stored_once(
    world: World,
) -> None:
    build = await world.submit()
    [task] = await claim(world)
    append = world.queue.append_logs
    assert (
        await append(
            task_id=task.task_id,
            lease_token=task.lease_token,
            chunks=[{"text": "a"}, {"text": "b", "stream": "err"}],
            offset=0,
        )
        == 2
    )
    # The same batch again (its answer was lost), then one overlapping the stored chunks.
    assert (
        await append(
            task_id=task.task_id,
            lease_token=task.lease_token,
            chunks=[{"text": "a"}, {"text": "b", "stream": "err"}],
            offset=0,
        )
        == 2
    )
    assert (
        await append(
            task_id=task.task_id,
            lease_token=task.lease_token,
            chunks=[{"text": "b", "stream": "err"}, {"text": "c"}],
            offset=1,
        )
        == 3
    )
    logs = await world.builds.logs(build.task_id)
    assert [(c["seq"], c["stream"], c["text"], c["attempt"]) for c in logs] == [
        (1, "out", "a", 1),
        (2, "err", "b", 1),
        (3, "out", "c", 1),
    ]
    assert [c["text"] for c in await world.builds.logs(build.task_id, since=2)] == ["c"]
    with pytest.raises(StaleLease):
        await append(task_id=task.task_id, lease_token="forged", chunks=[{"text": "x"}])
    with pytest.raises(NotFound):
        await append(task_id="no-such-build", lease_token="x", chunks=[{"text": "x"}])


async def test_a_result_ends_the_build_once_and_merges_the_agent_info(world: World) -> None:
    build = await world.submit()
    [task] = await claim(world)
    assert await complete(world, task) == BuildStatus.COMPLETED
    got = await world.builds.get(build.task_id)
    assert got.status == BuildStatus.COMPLETED and got.finished_at is not None
    assert got.result is not None and got.result.output == "done"
    assert got.agent_info == {"agent": "command", "model": "m1"}
    events = await world.builds.events(build.task_id)
    assert [(e.from_status, e.to_status, e.reason) for e in events][-1] == (
        BuildStatus.RUNNING,
        BuildStatus.COMPLETED,
        "completed",
    )
    with pytest.raises(StaleLease):
        await complete(world, task)
    with pytest.raises(NotFound):
        await world.queue.complete(
            task_id="no-such-build",
            lease_token="x",
            result=OK,
            agent_info=None,
            worker_name="w1",
            retry_delay_seconds=0,
            max_retryable_failures=2,
        )


async def test_a_batch_answers_every_item_in_order_and_the_first_answer_to_a_lease_wins(
    world: World,
) -> None:
    for i in range(4):
        await world.submit(prompt=f"t{i}")
    t0, t1, t2, t3 = await claim(world)
    outcomes = await world.queue.complete_many(
        [
            Completion(t0.task_id, t0.lease_token, OK),
            Completion(t1.task_id, t1.lease_token, BuildResult(success=False, error="boom")),
            Completion(t2.task_id, t2.lease_token, BuildResult(success=False, cancelled=True)),
            Completion(t0.task_id, t0.lease_token, BuildResult(success=False)),
            Completion(t3.task_id, "forged", OK),
            Completion("no-such-build", "x", OK),
        ],
        worker_name="w1",
        retry_delay_seconds=0,
        max_retryable_failures=2,
    )
    assert outcomes[:3] == [BuildStatus.COMPLETED, BuildStatus.FAILED, BuildStatus.CANCELLED]
    assert isinstance(outcomes[3], StaleLease) and isinstance(outcomes[4], StaleLease)
    assert isinstance(outcomes[5], NotFound)
    failed = await world.builds.get(t1.task_id)
    assert failed.result is not None and failed.result.error == "boom"
    assert (await world.builds.get(t0.task_id)).status == BuildStatus.COMPLETED
    assert (await world.builds.get(t3.task_id)).status == BuildStatus.RUNNING


async def test_a_retryable_failure_is_queued_again_until_the_retries_are_used_up(
    world: World,
) -> None:
    build = await world.submit()
    retryable = BuildResult(success=False, error="rate limited", retryable=True)
    [task] = await claim(world)
    assert await complete(world, task, retryable, retries=1) == BuildStatus.PENDING
    pending = await world.builds.get(build.task_id)
    assert pending.status == BuildStatus.PENDING and pending.agent_info["model"] == "m1"
    [again] = await claim(world)
    assert again.task_id == build.task_id and again.attempt == 2
    assert await complete(world, again, retryable, retries=1) == BuildStatus.FAILED
    assert (await world.builds.get(build.task_id)).status == BuildStatus.FAILED


async def test_a_retry_waits_for_its_delay_and_a_cancelled_result_is_never_retried(
    world: World,
) -> None:
    late, cancelled = await world.submit(), await world.submit()
    t_late, t_cancelled = await claim(world)
    retryable = BuildResult(success=False, retryable=True)
    assert await complete(world, t_late, retryable, delay=3600) == BuildStatus.PENDING
    both = BuildResult(success=False, retryable=True, cancelled=True)
    assert await complete(world, t_cancelled, both) == BuildStatus.CANCELLED
    assert await claim(world) == []  # the retry is due in an hour
    stats = await world.queue.queue_stats()
    assert stats["depth"] == 1 and stats["oldest_available_at"] is not None
    assert (await world.builds.get(late.task_id)).status == BuildStatus.PENDING
    assert (await world.builds.get(cancelled.task_id)).status == BuildStatus.CANCELLED


async def test_releasing_a_restarted_worker_takes_back_only_its_leases_at_once(
    world: World,
) -> None:
    mine = await world.submit()
    spent = await world.submit(max_attempts=1)
    theirs = await world.submit()
    await claim(world, n=2, lease=3600, worker="w1")
    [other] = await claim(world, lease=3600, worker="w2")

    assert await world.queue.release_worker("w1") == 2
    assert await world.queue.release_worker("w1") == 0

    again = await world.builds.get(mine.task_id)
    assert again.status == BuildStatus.PENDING
    assert (await world.builds.events(mine.task_id))[-1].reason == "worker restarted; requeued"
    assert (await world.builds.get(spent.task_id)).status == BuildStatus.FAILED
    assert other.task_id == theirs.task_id
    assert (await world.builds.get(theirs.task_id)).status == BuildStatus.RUNNING
    [reclaimed] = await claim(world, worker="w3")
    assert reclaimed.task_id == mine.task_id and reclaimed.attempt == 2


async def test_the_reaper_requeues_expired_leases_and_ends_builds_out_of_attempts(
    world: World,
) -> None:
    again = await world.submit(max_attempts=2)
    last = await world.submit(max_attempts=1)
    gone = await world.submit(max_attempts=3)
    held = await world.submit()
    expired = await claim(world, n=3, lease=-60)
    [live] = await claim(world, lease=3600)
    assert live.task_id == held.task_id
    await world.builds.cancel(gone.task_id, "someone")
    assert await world.queue.reap_expired() == 3
    assert await world.queue.reap_expired() == 0
    assert (await world.builds.get(again.task_id)).status == BuildStatus.PENDING
    lost = await world.builds.get(last.task_id)
    assert lost.status == BuildStatus.FAILED and lost.result is not None
    assert lost.result.error == "worker lost"
    cancelled = await world.builds.get(gone.task_id)
    assert cancelled.status == BuildStatus.CANCELLED and cancelled.result is not None
    assert cancelled.result.cancelled
    assert (await world.builds.get(held.task_id)).status == BuildStatus.RUNNING
    [retaken] = await claim(world)
    assert retaken.task_id == again.task_id and retaken.attempt == 2
    with pytest.raises(StaleLease):  # the first lease was taken back
        await complete(world, next(t for t in expired if t.task_id == again.task_id))


async def test_cancel_ends_a_pending_build_at_once_and_flags_a_running_one(world: World) -> None:
    pending = await world.submit()
    running = await world.submit()
    assert (await world.builds.cancel(pending.task_id, "me")).status == BuildStatus.CANCELLED
    [task] = await claim(world)
    assert task.task_id == running.task_id
    flagged = await world.builds.cancel(running.task_id, "me")
    assert flagged.status == BuildStatus.RUNNING and flagged.cancel_requested
    assert await complete(world, task, BuildResult(success=False, cancelled=True)) == (
        BuildStatus.CANCELLED
    )
    with pytest.raises(IllegalTransition):
        await world.builds.cancel(running.task_id, "me")
    with pytest.raises(NotFound):
        await world.builds.cancel("no-such-build", "me")
