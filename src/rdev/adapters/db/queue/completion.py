"""Completions: store a worker's results under its leases, in ONE path for every case.

Per batch: a task answered twice keeps its first answer; retryable failures with retries
left go back to the queue (their builds locked first: the retry count decides); every
other result ends its build through the dialect's ``finish`` (one statement on
PostgreSQL); refused leases are sorted into stale and unknown once; outbox rows for the
builds' callbacks commit with the statuses.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from rdev.domain.errors import StaleLease
from rdev.domain.models import BuildResult, BuildStatus
from rdev.domain.state_machine import check_transition
from rdev.ports.queue import Completion, Outcome

from ..dialects import LEASED, FinalWrite
from ..engine import Database
from ..outbox import enqueue, enqueue_for_status
from ..stamps import utcnow
from ..tables import builds, work_tasks
from ..transitions import transition
from .leases import refusals, requeue

#: Output beyond this is cut from the front (the end of a log says most).
MAX_OUTPUT_CHARS = 256 * 1024


def final_write(item: Completion) -> FinalWrite:
    """The final status a result ends its build with, and the audit reason."""
    result = item.result
    if len(result.output) > MAX_OUTPUT_CHARS:  # stored (and seen by hooks) cut
        result.output = result.output[-MAX_OUTPUT_CHARS:]
    if result.cancelled:
        status, reason = BuildStatus.CANCELLED, "cancelled"
    elif result.success:
        status, reason = BuildStatus.COMPLETED, "completed"
    else:
        status, reason = BuildStatus.FAILED, (result.error or "failed")[:500]
    check_transition(BuildStatus.RUNNING, status)
    return FinalWrite(
        task_id=item.task_id,
        lease_token=item.lease_token,
        status=status,
        result=result,
        agent_info=dict(item.agent_info or {}),
        reason=reason,
    )


def wants_retry(result: BuildResult) -> bool:
    return result.retryable and not result.cancelled


class Completions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def complete(
        self,
        *,
        task_id: str,
        lease_token: str,
        result: BuildResult,
        agent_info: dict[str, Any] | None,
        worker_name: str,
        retry_delay_seconds: float,
        max_retryable_failures: int,
    ) -> BuildStatus:
        """Store one result; StaleLease (409) when the lease is no longer the caller's."""
        [outcome] = await self.complete_many(
            [Completion(task_id, lease_token, result, agent_info)],
            worker_name=worker_name,
            retry_delay_seconds=retry_delay_seconds,
            max_retryable_failures=max_retryable_failures,
        )
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def complete_many(
        self,
        items: list[Completion],
        *,
        worker_name: str,
        retry_delay_seconds: float,
        max_retryable_failures: int,
    ) -> list[Outcome]:
        """Store many results in one transaction (batch-claiming workers report in batches).

        Each item gets its own outcome: the new status, or the error for its lease.
        """
        actor = f"worker:{worker_name}"
        now = utcnow()
        outcomes: dict[int, Outcome] = {}
        first: dict[str, int] = {}
        for k, item in enumerate(items):  # a lease is answered once: the first result wins
            if item.task_id in first:
                outcomes[k] = StaleLease(f"build {item.task_id} was already answered in this batch")
            else:
                first[item.task_id] = k
        todo = [k for k in range(len(items)) if k not in outcomes]
        async with self.db.write() as conn:
            finals: dict[int, FinalWrite] = {}
            refused: list[int] = []
            retries = [k for k in todo if wants_retry(items[k].result)]
            if retries:
                decided = await self._retry(
                    conn,
                    [items[k] for k in retries],
                    now=now,
                    actor=actor,
                    retry_delay_seconds=retry_delay_seconds,
                    max_retryable_failures=max_retryable_failures,
                )
                for k, d in zip(retries, decided, strict=True):
                    if isinstance(d, FinalWrite):
                        finals[k] = d
                    elif d is None:
                        refused.append(k)
                    else:
                        outcomes[k] = d
            for k in todo:
                if k not in outcomes and k not in finals and k not in refused:
                    finals[k] = final_write(items[k])
            finished = (
                await self.db.dialect.finish(conn, list(finals.values()), now=now, actor=actor)
                if finals
                else {}
            )
            for k, fw in finals.items():
                done = finished.get(fw.task_id)
                if done is None:
                    refused.append(k)
                    continue
                outcomes[k] = fw.status
                if done.has_callback:  # outbox rows commit with the status (rare)
                    if done.pushed and fw.result.commit_sha:
                        await enqueue(conn, done.build_id, "build.pushed")
                    await enqueue_for_status(conn, done.build_id, fw.status, {"callback_url": True})
            errors = await refusals(conn, [items[k].task_id for k in refused])
            for k in refused:
                outcomes[k] = errors[items[k].task_id]
        return [outcomes[k] for k in range(len(items))]

    async def _retry(
        self,
        conn: AsyncConnection,
        items: list[Completion],
        *,
        now: datetime,
        actor: str,
        retry_delay_seconds: float,
        max_retryable_failures: int,
    ) -> list[BuildStatus | FinalWrite | None]:
        """Retryable failures: lock each build and its work task; with retries left the
        build is pending again (PENDING), else it ends (its FinalWrite); None: no lease."""
        locked = (
            await conn.execute(
                self.db.dialect.lock_row(
                    select(
                        builds.c.id,
                        builds.c.task_id,
                        builds.c.status,
                        builds.c.spec,
                        builds.c.retries,
                        builds.c.agent_info,
                        work_tasks.c.state.label("wt_state"),
                        work_tasks.c.lease_token.label("wt_token"),
                    )
                    .select_from(builds.join(work_tasks, work_tasks.c.build_id == builds.c.id))
                    .where(builds.c.task_id.in_([i.task_id for i in items])),
                    of=[builds, work_tasks],
                )
            )
        ).mappings()
        rows = {r["task_id"]: r for r in locked}
        decided: list[BuildStatus | FinalWrite | None] = []
        for item in items:
            row = rows.get(item.task_id)
            if row is None or row["wt_state"] != LEASED or row["wt_token"] != item.lease_token:
                decided.append(None)
                continue
            if row["retries"] >= max_retryable_failures:
                decided.append(final_write(item))  # out of retries: it ends like any other
                continue
            info = {**(row["agent_info"] or {}), **(item.agent_info or {})}
            result = item.result
            delay = result.retry_after_seconds or retry_delay_seconds
            await transition(
                conn,
                row,
                BuildStatus.PENDING,
                actor=actor,
                reason=f"retryable failure, retry in {delay:.0f}s: {result.error or ''}"[:500],
                values={"agent_info": info, "retries": row["retries"] + 1, "worker_id": None},
            )
            await requeue(conn, row["id"], now + timedelta(seconds=delay))
            decided.append(BuildStatus.PENDING)
        return decided
