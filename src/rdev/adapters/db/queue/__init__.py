"""The work queue, by concern: claims (:mod:`.claim`), completions (:mod:`.completion`),
leases, heartbeats and the reaper (:mod:`.leases`), log append (:mod:`.logs`).

:class:`SqlWorkQueue` is the :class:`~rdev.ports.queue.WorkQueue` the services use; it
composes the parts and adds nothing. Claims lock candidate rows with ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL (so concurrent claimers never wait on, or double-take, each
other's rows); on SQLite the single-writer transaction gives the same exclusivity.
"""

from __future__ import annotations

from sqlalchemy import func, select

from rdev.ports.queue import QueueStats

from ..dialects import QUEUED
from ..engine import Database
from ..notify import WorkNotifier
from ..tables import work_tasks
from .claim import Claims
from .completion import MAX_OUTPUT_CHARS, Completions
from .leases import Leases
from .logs import LogAppender

__all__ = ["MAX_OUTPUT_CHARS", "SqlWorkQueue"]


class SqlWorkQueue:
    def __init__(self, db: Database, notifier: WorkNotifier) -> None:
        self.db = db
        self.notifier = notifier
        claims = Claims(db, notifier)
        completions = Completions(db)
        leases = Leases(db, notifier)
        self.claim = claims.claim
        self.heartbeat = leases.heartbeat
        self.reap_expired = leases.reap_expired
        self.release_worker = leases.release_worker
        self.append_logs = LogAppender(db).append_logs
        self.complete = completions.complete
        self.complete_many = completions.complete_many

    async def queue_stats(self) -> QueueStats:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.min(work_tasks.c.available_at)).where(
                        work_tasks.c.state == QUEUED
                    )
                )
            ).one()
        return {"depth": row[0], "oldest_available_at": row[1]}
