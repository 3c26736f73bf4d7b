"""Claims: lease claimable builds to a worker (the dialect's one statement, or steps)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from rdev.domain.models import ClaimedTask

from ..dialects import ClaimRequest
from ..engine import Database
from ..notify import WorkNotifier
from ..outbox import enqueue, wanted
from ..stamps import utcnow


class Claims:
    def __init__(self, db: Database, notifier: WorkNotifier) -> None:
        self.db = db
        self.notifier = notifier

    async def claim(
        self,
        *,
        worker_id: str,
        worker_name: str,
        agents: list[str],
        labels: list[str],
        max_tasks: int,
        lease_seconds: float,
    ) -> list[ClaimedTask]:
        if max_tasks <= 0 or not agents:
            return []
        req = ClaimRequest(
            worker_id=worker_id,
            worker_name=worker_name,
            agents=agents,
            labels=labels,
            max_tasks=max_tasks,
            lease_seconds=lease_seconds,
            now=utcnow(),
        )
        async with self.db.write() as conn:
            batch = await self.db.dialect.claim(conn, req)
            if batch.full:
                self.notifier.wake_like(agents)  # there may be more: pass it on
            await _started_events(conn, batch.callbacks)
        return batch.tasks


async def _started_events(
    conn: AsyncConnection, callbacks: list[tuple[int, dict[str, object]]]
) -> None:
    """Outbox rows for ``build.started`` (rare: builds with a callback that want it)."""
    for build_id, spec in callbacks:
        if wanted(spec, "build.started"):
            await enqueue(conn, build_id, "build.started")
