"""Webhook delivery storage: claim due deliveries under a lease, record attempts, list, redeliver.

The outbox rows themselves are written by ``outbox.py`` in the status-change transaction; this
store is what the dispatcher and the deliveries API use afterwards.

Claiming: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (the single-writer transaction on SQLite)
picks due rows nobody holds, and ``locked_until`` is the lease that keeps other replicas off
them while the POST is in flight. The lease value doubles as the claim's token: an attempt is
settled only while ``locked_until`` still holds the value this claim wrote, so a replica
whose lease ran out can record what happened but never overwrite a newer claim's state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update

from rdev.domain.errors import Conflict, NotFound

from .engine import Database
from .rows import utcnow
from .tables import builds, projects, webhook_attempts, webhook_deliveries

D = webhook_deliveries

#: What the API and the dispatcher read about a delivery (plus the build it belongs to).
_DELIVERY_COLUMNS = [
    D.c.id,
    D.c.build_id,
    D.c.event,
    D.c.url,
    D.c.state,
    D.c.attempts,
    D.c.next_attempt_at,
    D.c.locked_until,
    D.c.last_error,
    D.c.created_at,
    D.c.delivered_at,
    builds.c.task_id,
    builds.c.project_id,
    projects.c.name.label("project_name"),
]


def _with_build(*columns: Any):  # type: ignore[no-untyped-def]
    return select(*columns).select_from(
        D.join(builds, builds.c.id == D.c.build_id).join(
            projects, projects.c.id == builds.c.project_id
        )
    )


class SqlDeliveryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_due(self, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        """Take up to ``limit`` due, unleased pending deliveries under a lease.

        Returns dicts with id, url, payload, attempts, event, task_id, secret (the project's
        webhook secret, may be None) and ``lease`` (the token for ``settle``).
        """
        if limit <= 0:
            return []
        now = utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        stmt = (
            select(D.c.id)
            .where(
                D.c.state == "pending",
                D.c.next_attempt_at <= now,
                or_(D.c.locked_until.is_(None), D.c.locked_until <= now),
            )
            .order_by(D.c.next_attempt_at, D.c.id)
            .limit(limit)
        )
        async with self.db.write() as conn:
            ids = [r[0] for r in (await conn.execute(self.db.dialect.lock_for_claim(stmt))).all()]
            if not ids:
                return []
            await conn.execute(update(D).where(D.c.id.in_(ids)).values(locked_until=lease))
            rows = (
                (
                    await conn.execute(
                        _with_build(
                            D.c.id,
                            D.c.url,
                            D.c.payload,
                            D.c.attempts,
                            D.c.event,
                            builds.c.task_id,
                            projects.c.webhook_secret.label("secret"),
                        ).where(D.c.id.in_(ids))
                    )
                )
                .mappings()
                .all()
            )
        return [{**r, "lease": lease} for r in rows]

    async def settle(
        self,
        delivery_id: str,
        lease: datetime,
        *,
        at: datetime,
        status_code: int | None,
        error: str | None,
        latency_ms: int,
        response_excerpt: str | None,
        state: str,
        attempts: int,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record one attempt and, if this claim still holds the lease, the new state.

        The attempt row is written either way (the POST happened). Returns False when the
        lease was lost (the delivery was re-claimed or redelivered meanwhile).
        """
        values: dict[str, Any] = {
            "state": state,
            "attempts": attempts,
            "locked_until": None,
            "last_error": error,
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if state == "delivered":
            values["delivered_at"] = at
        async with self.db.write() as conn:
            await conn.execute(
                insert(webhook_attempts).values(
                    delivery_id=delivery_id,
                    at=at,
                    status_code=status_code,
                    error=error,
                    latency_ms=latency_ms,
                    response_excerpt=response_excerpt,
                )
            )
            res = await conn.execute(
                update(D)
                .where(D.c.id == delivery_id, D.c.state == "pending", D.c.locked_until == lease)
                .values(**values)
            )
        return res.rowcount == 1

    async def release(self, leases: dict[str, datetime]) -> None:
        """Give up leases without an attempt (shutdown): the rows are due again at once."""
        if not leases:
            return
        async with self.db.write() as conn:
            for delivery_id, lease in leases.items():
                await conn.execute(
                    update(D)
                    .where(D.c.id == delivery_id, D.c.locked_until == lease)
                    .values(locked_until=None)
                )

    async def for_build(self, task_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(the build's task_id/project_id/project_name, its deliveries oldest first, each with
        ``attempt_log``: every recorded attempt, oldest first)."""
        async with self.db.read() as conn:
            build = (
                (
                    await conn.execute(
                        select(
                            builds.c.id,
                            builds.c.task_id,
                            builds.c.project_id,
                            projects.c.name.label("project_name"),
                        )
                        .select_from(builds.join(projects))
                        .where(builds.c.task_id == task_id)
                    )
                )
                .mappings()
                .first()
            )
            if build is None:
                raise NotFound(f"no build {task_id!r}")
            rows = (
                (
                    await conn.execute(
                        _with_build(*_DELIVERY_COLUMNS)
                        .where(D.c.build_id == build["id"])
                        .order_by(D.c.created_at, D.c.id)
                    )
                )
                .mappings()
                .all()
            )
            deliveries = [dict(r) for r in rows]
            await self._attach_attempts(conn, deliveries)
        return dict(build), deliveries

    async def get(self, delivery_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(_with_build(*_DELIVERY_COLUMNS).where(D.c.id == delivery_id)))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r}")
            delivery = dict(row)
            await self._attach_attempts(conn, [delivery])
        return delivery

    async def _attach_attempts(self, conn: Any, deliveries: list[dict[str, Any]]) -> None:
        by_id = {d["id"]: d for d in deliveries}
        for d in deliveries:
            d["attempt_log"] = []
        if not by_id:
            return
        rows = (
            (
                await conn.execute(
                    select(webhook_attempts)
                    .where(webhook_attempts.c.delivery_id.in_(list(by_id)))
                    .order_by(webhook_attempts.c.id)
                )
            )
            .mappings()
            .all()
        )
        for r in rows:
            by_id[r["delivery_id"]]["attempt_log"].append(dict(r))

    async def redeliver(self, delivery_id: str) -> None:
        """Start a new attempt cycle for the same delivery (same id, same body), due now.

        Refused with Conflict while an attempt is in flight (the lease is held).
        """
        now = utcnow()
        async with self.db.write() as conn:
            row = (
                (
                    await conn.execute(
                        self.db.dialect.lock_row(
                            select(D.c.state, D.c.locked_until).where(D.c.id == delivery_id)
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r}")
            if row["state"] == "pending" and row["locked_until"] and row["locked_until"] > now:
                raise Conflict("an attempt of this delivery is in flight; try again shortly")
            await conn.execute(
                update(D)
                .where(D.c.id == delivery_id)
                .values(
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    locked_until=None,
                    delivered_at=None,
                )
            )
