"""Read-only look-up of a task's live lease, for credentials derived from it.

The git smart-HTTP server accepts a per-task git credential (services/repos.py) that is
derived from the lease token: it is valid exactly while that lease is, by the same rule the
heartbeat and the result use: the task is leased under that token. A lease past its expiry
still holds until the reaper takes it back (then the token is gone); a stricter clock test
here refused the first clone of a build whose claim answer was slow on a loaded machine, while
its heartbeat and result were still accepted.
"""

from __future__ import annotations

from sqlalchemy import select

from rdev.ports.leases import LiveLease

from .engine import Database
from .tables import builds, projects, work_tasks


class SqlLeaseReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def live_lease(self, task_id: str) -> LiveLease | None:
        stmt = (
            select(work_tasks.c.lease_token, projects.c.name)
            .select_from(
                work_tasks.join(builds, builds.c.id == work_tasks.c.build_id).join(projects)
            )
            .where(
                work_tasks.c.task_id == task_id,
                work_tasks.c.state == "leased",
            )
        )
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None or not row[0]:
            return None
        return LiveLease(lease_token=str(row[0]), project_name=str(row[1]))
