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

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Select, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from rdev.domain.errors import Conflict, NotFound
from rdev.ports.deliveries import (
    BuildOwner,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    DueDelivery,
)

from .engine import Database
from .stamps import utcnow
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


def _with_build(*columns: Any) -> Select[Any]:
    return select(*columns).select_from(
        D.join(builds, builds.c.id == D.c.build_id).join(
            projects, projects.c.id == builds.c.project_id
        )
    )


def _attempt(r: RowMapping) -> DeliveryAttempt:
    return DeliveryAttempt(
        at=r["at"],
        status_code=r["status_code"],
        error=r["error"],
        latency_ms=r["latency_ms"],
        response_excerpt=r["response_excerpt"],
    )


def _delivery(r: RowMapping, attempts: Sequence[DeliveryAttempt]) -> Delivery:
    return Delivery(
        id=r["id"],
        build_id=r["build_id"],
        task_id=r["task_id"],
        project_id=r["project_id"],
        project_name=r["project_name"],
        event=r["event"],
        url=r["url"],
        state=DeliveryState(r["state"]),
        attempts=r["attempts"],
        next_attempt_at=r["next_attempt_at"],
        locked_until=r["locked_until"],
        last_error=r["last_error"],
        created_at=r["created_at"],
        delivered_at=r["delivered_at"],
        attempt_log=tuple(attempts),
    )


class SqlDeliveryStore:
    """The DeliveryStore port on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_due(self, limit: int, lease_seconds: float) -> list[DueDelivery]:
        """Take up to ``limit`` due, unleased pending deliveries under a lease."""
        if limit <= 0:
            return []
        now = utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        order = (D.c.next_attempt_at, D.c.id)
        stmt = (
            select(D.c.id)
            .where(
                D.c.state == DeliveryState.PENDING.value,
                D.c.next_attempt_at <= now,
                or_(D.c.locked_until.is_(None), D.c.locked_until <= now),
            )
            .order_by(*order)
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
                        )
                        .where(D.c.id.in_(ids))
                        .order_by(*order)
                    )
                )
                .mappings()
                .all()
            )
        return [
            DueDelivery(
                id=r["id"],
                task_id=r["task_id"],
                event=r["event"],
                url=r["url"],
                payload=r["payload"],
                attempts=r["attempts"],
                secret=SecretStr(r["secret"]) if r["secret"] else None,
                lease=lease,
            )
            for r in rows
        ]

    async def settle(
        self,
        delivery_id: str,
        lease: datetime,
        attempt: DeliveryAttempt,
        *,
        state: DeliveryState,
        attempts: int,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record one attempt and, if this claim still holds the lease, the new state.

        The attempt row is written either way (the POST happened). Returns False when the
        lease was lost (the delivery was re-claimed or redelivered meanwhile).
        """
        values: dict[str, Any] = {
            "state": state.value,
            "attempts": attempts,
            "locked_until": None,
            "last_error": attempt.error,
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if state == DeliveryState.DELIVERED:
            values["delivered_at"] = attempt.at
        async with self.db.write() as conn:
            await conn.execute(
                insert(webhook_attempts).values(
                    delivery_id=delivery_id,
                    at=attempt.at,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    latency_ms=attempt.latency_ms,
                    response_excerpt=attempt.response_excerpt,
                )
            )
            res = await conn.execute(
                update(D)
                .where(
                    D.c.id == delivery_id,
                    D.c.state == DeliveryState.PENDING.value,
                    D.c.locked_until == lease,
                )
                .values(**values)
            )
        return bool(res.rowcount == 1)

    async def release(self, leases: Mapping[str, datetime]) -> None:
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

    async def for_build(self, task_id: str) -> tuple[BuildOwner, list[Delivery]]:
        """The build, and its deliveries oldest first, each with every recorded attempt."""
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
            log = await self._attempts(conn, [r["id"] for r in rows])
        owner = BuildOwner(build["task_id"], build["project_id"], build["project_name"])
        return owner, [_delivery(r, log.get(r["id"], [])) for r in rows]

    async def get(self, delivery_id: str) -> Delivery:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(_with_build(*_DELIVERY_COLUMNS).where(D.c.id == delivery_id)))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r}")
            log = await self._attempts(conn, [delivery_id])
        return _delivery(row, log.get(delivery_id, []))

    async def _attempts(
        self, conn: AsyncConnection, delivery_ids: list[str]
    ) -> dict[str, list[DeliveryAttempt]]:
        """Every recorded attempt of these deliveries, oldest first, by delivery id."""
        out: dict[str, list[DeliveryAttempt]] = {}
        if not delivery_ids:
            return out
        rows = (
            (
                await conn.execute(
                    select(webhook_attempts)
                    .where(webhook_attempts.c.delivery_id.in_(delivery_ids))
                    .order_by(webhook_attempts.c.id)
                )
            )
            .mappings()
            .all()
        )
        for r in rows:
            out.setdefault(r["delivery_id"], []).append(_attempt(r))
        return out

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
            held = row["locked_until"] is not None and row["locked_until"] > now
            if row["state"] == DeliveryState.PENDING.value and held:
                raise Conflict("an attempt of this delivery is in flight; try again shortly")
            await conn.execute(
                update(D)
                .where(D.c.id == delivery_id)
                .values(
                    state=DeliveryState.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    locked_until=None,
                    delivered_at=None,
                )
            )
