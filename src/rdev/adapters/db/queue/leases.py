"""Leases: who may write on a claimed task, heartbeats that extend them, and the reaper
that takes back the expired ones.

A lease is a work task in state ``leased`` with the claimer's token. A write naming a
token that no longer matches is refused: StaleLease if the build exists (finished, or
taken back and leased again), NotFound if it never did; :func:`refusals` is that rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rdev.domain.errors import NotFound, StaleLease
from rdev.domain.models import BuildResult, BuildStatus

from ..build_rows import build_select
from ..dialects import LEASED, QUEUED
from ..engine import Database
from ..notify import WorkNotifier
from ..stamps import utcnow
from ..tables import builds, work_tasks
from ..transitions import transition


async def refusals(
    conn: AsyncConnection, task_ids: Iterable[str]
) -> dict[str, StaleLease | NotFound]:
    """The error for each task whose lease check failed: stale if its build exists."""
    refused = list(dict.fromkeys(task_ids))
    if not refused:
        return {}
    known = set(
        (
            await conn.execute(select(builds.c.task_id).where(builds.c.task_id.in_(refused)))
        ).scalars()
    )
    return {
        t: StaleLease(f"the lease on build {t} is no longer yours")
        if t in known
        else NotFound(f"no build {t!r}")
        for t in refused
    }


async def check_lease(db: Database, conn: AsyncConnection, task_id: str, lease_token: str) -> None:
    """Lock the task's work row; raise unless it is leased under ``lease_token``."""
    row = (
        await conn.execute(
            db.dialect.lock_row(
                select(work_tasks.c.state, work_tasks.c.lease_token).where(
                    work_tasks.c.task_id == task_id
                )
            )
        )
    ).first()
    if row is None or row.state != LEASED or row.lease_token != lease_token:
        raise (await refusals(conn, [task_id]))[task_id]


async def requeue(conn: AsyncConnection, build_id: int, available_at: datetime) -> None:
    """Put a build's work task back in the queue (its build is pending again)."""
    await conn.execute(
        update(work_tasks)
        .where(work_tasks.c.build_id == build_id)
        .values(
            state=QUEUED,
            lease_token=None,
            lease_expires_at=None,
            worker_id=None,
            available_at=available_at,
        )
    )


class Leases:
    """Heartbeats and the reaper."""

    def __init__(self, db: Database, notifier: WorkNotifier) -> None:
        self.db = db
        self.notifier = notifier

    async def heartbeat(
        self, *, worker_id: str, tasks: dict[str, str], lease_seconds: float
    ) -> tuple[dict[str, datetime], list[str]]:
        """Extend the leases of ``tasks`` (task_id -> lease token).

        Returns (expiry per task, task ids with a cancel request). Any stale lease raises
        StaleLease (naming the lost tasks in ``extra``) and changes nothing.
        """
        if not tasks:
            return {}, []
        expires = utcnow() + timedelta(seconds=lease_seconds)
        async with self.db.write() as conn:
            rows = (
                await conn.execute(
                    select(
                        work_tasks.c.task_id, work_tasks.c.lease_token, work_tasks.c.state
                    ).where(work_tasks.c.task_id.in_(list(tasks)))
                )
            ).all()
            current = {r.task_id: r for r in rows}
            lost = [
                t
                for t, tok in tasks.items()
                if t not in current or current[t].state != LEASED or current[t].lease_token != tok
            ]
            if lost:
                raise StaleLease(
                    f"lost the lease on {len(lost)} task(s)", extra={"lost_tasks": lost}
                )
            await conn.execute(
                update(work_tasks)
                .where(work_tasks.c.task_id.in_(list(tasks)))
                .values(lease_expires_at=expires)
            )
            cancels = (
                (
                    await conn.execute(
                        select(builds.c.task_id).where(
                            builds.c.task_id.in_(list(tasks)), builds.c.cancel_requested.is_(True)
                        )
                    )
                )
                .scalars()
                .all()
            )
        return {t: expires for t in tasks}, list(cancels)

    async def reap_expired(self, limit: int = 100) -> int:
        """Return expired leases to pending, or end their builds; returns how many."""
        return await self._take_back(
            work_tasks.c.lease_expires_at < utcnow(),
            reason="lease expired (worker lost); requeued",
            limit=limit,
        )

    async def release_worker(self, worker_id: str) -> int:
        """Take back, at once, every lease ``worker_id`` still holds: its process is gone (a
        new process registered under the same name), so nobody will report them."""
        return await self._take_back(
            work_tasks.c.worker_id == worker_id,
            reason="worker restarted; requeued",
            limit=10_000,
        )

    async def _take_back(self, which: Any, *, reason: str, limit: int) -> int:
        """The reaper's rule for leases nobody will report: requeue the build, or end it
        (cancel requested, or attempts used up)."""
        now = utcnow()
        stmt = (
            select(work_tasks.c.build_id)
            .where(work_tasks.c.state == LEASED, which)
            .order_by(work_tasks.c.build_id)
            .limit(limit)
        )
        requeued = 0
        async with self.db.write() as conn:
            ids = (await conn.execute(self.db.dialect.lock_for_claim(stmt))).scalars().all()
            for build_id in ids:
                row = (
                    (await conn.execute(build_select().where(builds.c.id == build_id)))
                    .mappings()
                    .one()
                )
                end = _reaped_end(row)
                if end is None:
                    await transition(
                        conn,
                        row,
                        BuildStatus.PENDING,
                        actor="reaper",
                        reason=reason,
                        values={"worker_id": None},
                    )
                    await requeue(conn, build_id, now)
                    requeued += 1
                    continue
                status, end_reason, result = end
                await transition(
                    conn,
                    row,
                    status,
                    actor="reaper",
                    reason=end_reason,
                    values={"result": result.model_dump(mode="json")},
                )
                await conn.execute(delete(work_tasks).where(work_tasks.c.build_id == build_id))
            if requeued:
                await self.db.dialect.notify_work(conn)
        if requeued:
            self.notifier.wake()
        return len(ids)


def _reaped_end(row: Any) -> tuple[BuildStatus, str, BuildResult] | None:
    """How a build whose worker was lost ends (status, reason, result), or None: requeue."""
    if row["cancel_requested"]:
        return (
            BuildStatus.CANCELLED,
            "cancel requested; worker lost",
            BuildResult(success=False, error="cancelled (worker lost)", cancelled=True),
        )
    if row["attempts"] >= row["max_attempts"]:
        return BuildStatus.FAILED, "worker lost", BuildResult(success=False, error="worker lost")
    return None
