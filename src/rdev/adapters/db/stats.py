"""Aggregate reads for the metrics endpoint: counts computed at scrape time.

Every query is one small GROUP BY over an indexed column; nothing here names a project
or a build, so a scrape reveals only totals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from rdev.domain.models import BuildStatus

from .engine import Database
from .stamps import utcnow
from .tables import build_events, builds, webhook_deliveries, workers


class SqlStats:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def snapshot(self, offline_after_seconds: float) -> dict[str, Any]:
        """Builds per status now, status transitions so far (audit trail), outbox states,
        workers online."""
        now = utcnow()
        async with self.db.read() as conn:
            current = (
                await conn.execute(select(builds.c.status, func.count()).group_by(builds.c.status))
            ).all()
            entered = (
                await conn.execute(
                    select(build_events.c.to_status, func.count()).group_by(
                        build_events.c.to_status
                    )
                )
            ).all()
            outbox = (
                await conn.execute(
                    select(webhook_deliveries.c.state, func.count()).group_by(
                        webhook_deliveries.c.state
                    )
                )
            ).all()
            cutoff = now - timedelta(seconds=offline_after_seconds)
            online = (
                await conn.execute(
                    select(func.count()).where(
                        workers.c.stopped_at.is_(None), workers.c.last_heartbeat_at >= cutoff
                    )
                )
            ).scalar_one()
        return {
            "builds": {s: n for s, n in current},
            "transitions": {s: n for s, n in entered},
            "webhook_outbox": {s: n for s, n in outbox},
            "workers_online": online,
        }

    async def queued_since(self, task_ids: list[str]) -> dict[str, datetime]:
        """When each build last entered ``pending`` (its place in the queue), by task id."""
        if not task_ids:
            return {}
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(builds.c.task_id, func.max(build_events.c.at))
                    .select_from(build_events.join(builds))
                    .where(
                        builds.c.task_id.in_(task_ids),
                        build_events.c.to_status == BuildStatus.PENDING.value,
                    )
                    .group_by(builds.c.task_id)
                )
            ).all()
        return {t: _aware(at) for t, at in rows if at is not None}


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
