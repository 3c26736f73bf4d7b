"""CI link storage: which pushed builds still wait for their CI pipeline, leased to one linker.

A ``ci_links`` row exists per build whose pushed commit is being followed in CI. The linker
loop of every server replica claims due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and
marks them leased (``locked_until``) in the same transaction, so two replicas never check the
same build at once; a replica that dies mid-check leaves a lease that simply expires.

Every result of a check is written with :meth:`SqlCILinkStore.record` in ONE transaction:
the link's next state, the build's ``ci`` JSON and, at the end, the ``build.ci_passed`` /
``build.ci_failed`` outbox row. The write is a compare-and-set on the lease, so a linker
that lost its lease (it was slower than ``lease_seconds``) changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, or_, select, update

from rdev.domain.ci_links import OPEN_LINK_STATES, CILinkState, CIProgress, link_state
from rdev.ports.ci import ProjectCI
from rdev.ports.ci_links import LinkCandidate, LinkOutcome, LinkWork

from .engine import Database
from .outbox import enqueue
from .stamps import utcnow
from .tables import builds, ci_links, projects

#: Link states that the linker still works on (stored values).
OPEN_STATES = tuple(sorted(s.value for s in OPEN_LINK_STATES))


class SqlCILinkStore:
    """The CILinkStore port on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def candidate(self, task_id: str) -> LinkCandidate | None:
        stmt = (
            select(builds.c.id, builds.c.task_id, builds.c.agent_info, projects.c.settings)
            .select_from(builds.join(projects))
            .where(builds.c.task_id == task_id)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        ci = (row["settings"] or {}).get("ci") or {}
        return LinkCandidate(
            build_id=row["id"],
            task_id=row["task_id"],
            pushed=bool((row["agent_info"] or {}).get("pushed")),
            ci_provider=str(ci.get("provider") or "none"),
        )

    async def start(
        self, build_id: int, commit_sha: str, *, ci: CIProgress, deadline_at: datetime
    ) -> bool:
        """Insert the link (first check due now) and the build's initial ``ci``.
        False if the build is linked already (a repeated completion hook)."""
        now = utcnow()
        async with self.db.write() as conn:
            mine = select(ci_links.c.build_id).where(ci_links.c.build_id == build_id)
            exists = (await conn.execute(mine)).first()
            if exists:
                return False
            await conn.execute(
                insert(ci_links).values(
                    build_id=build_id,
                    commit_sha=commit_sha,
                    state=CILinkState.SEARCHING.value,
                    next_check_at=now,
                    deadline_at=deadline_at,
                    locked_until=None,
                    checks=0,
                )
            )
            await conn.execute(
                update(builds).where(builds.c.id == build_id).values(ci=ci.to_json())
            )
        return True

    async def claim_due(self, *, lease_seconds: float, limit: int = 20) -> list[LinkWork]:
        """Lease up to ``limit`` open links whose check is due (oldest first)."""
        now = utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        due = (
            select(ci_links.c.build_id)
            .where(
                ci_links.c.state.in_(OPEN_STATES),
                ci_links.c.next_check_at <= now,
                or_(ci_links.c.locked_until.is_(None), ci_links.c.locked_until < now),
            )
            .order_by(ci_links.c.next_check_at, ci_links.c.build_id)
            .limit(limit)
        )
        async with self.db.write() as conn:
            ids = list((await conn.execute(self.db.dialect.lock_for_claim(due))).scalars().all())
            if not ids:
                return []
            await conn.execute(
                update(ci_links).where(ci_links.c.build_id.in_(ids)).values(locked_until=lease)
            )
            rows = (
                (
                    await conn.execute(
                        select(
                            ci_links,
                            builds.c.task_id,
                            builds.c.ci,
                            projects.c.settings,
                            projects.c.ci_token,
                        )
                        .select_from(ci_links.join(builds).join(projects))
                        .where(ci_links.c.build_id.in_(ids))
                        .order_by(ci_links.c.next_check_at, ci_links.c.build_id)
                    )
                )
                .mappings()
                .all()
            )
        return [
            LinkWork(
                build_id=r["build_id"],
                task_id=r["task_id"],
                commit_sha=r["commit_sha"],
                state=link_state(r["state"]),
                checks=r["checks"] or 0,
                deadline_at=r["deadline_at"],
                lease=lease,
                ci=CIProgress.from_json(r["ci"], commit_sha=r["commit_sha"]),
                project_ci=ProjectCI.of(r["settings"], r["ci_token"]),
            )
            for r in rows
        ]

    async def record(self, work: LinkWork, outcome: LinkOutcome) -> bool:
        """Store one check's outcome and release the lease; the outcome's event (at the end)
        is queued in the same transaction. False (nothing written) when the lease was lost."""
        async with self.db.write() as conn:
            res = await conn.execute(
                update(ci_links)
                .where(ci_links.c.build_id == work.build_id, ci_links.c.locked_until == work.lease)
                .values(
                    state=outcome.state.value,
                    next_check_at=outcome.next_check_at,
                    checks=outcome.checks,
                    locked_until=None,
                )
            )
            if res.rowcount != 1:
                return False
            await conn.execute(
                update(builds).where(builds.c.id == work.build_id).values(ci=outcome.ci.to_json())
            )
            if outcome.event:
                await enqueue(conn, work.build_id, outcome.event)
        return True

    async def next_due(self) -> datetime | None:
        """When the earliest open link is due (the loop sleeps until then)."""
        async with self.db.read() as conn:
            due: datetime | None = (
                await conn.execute(
                    select(ci_links.c.next_check_at)
                    .where(ci_links.c.state.in_(OPEN_STATES))
                    .order_by(ci_links.c.next_check_at)
                    .limit(1)
                )
            ).scalar()
        return due
