"""An in-memory DeliveryStore: the contract of ``adapters/db/deliveries.py`` without SQL.

Builds and outbox rows are added with :meth:`FakeDeliveryStore.add_build` and
:meth:`add_delivery` (what the status-change transaction writes on the SQL side). Time comes
from the injected clock: due times and leases move with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from rdev.domain.errors import Conflict, NotFound
from rdev.ports.deliveries import (
    BuildOwner,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    DueDelivery,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Row:
    delivery: Delivery
    payload: str
    attempts: list[DeliveryAttempt] = field(default_factory=list)


@dataclass
class FakeDeliveryStore:
    clock: Callable[[], datetime] = _utc_now
    #: task id -> (build id, the build's owner, the project's webhook secret).
    builds: dict[str, tuple[int, BuildOwner, SecretStr | None]] = field(default_factory=dict)
    rows: dict[str, _Row] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- seeding (not on the port) ---------------------------------------------------------
    def add_build(
        self,
        task_id: str,
        *,
        project_id: str = "p1",
        project_name: str = "shop",
        secret: str | None = "whsec_test",
    ) -> int:
        build_id = len(self.builds) + 1
        owner = BuildOwner(task_id, project_id, project_name)
        self.builds[task_id] = (build_id, owner, SecretStr(secret) if secret else None)
        return build_id

    def add_delivery(
        self,
        task_id: str,
        *,
        event: str = "build.completed",
        url: str = "http://127.0.0.1:9/hook",
        payload: str = "{}",
        next_attempt_at: datetime | None = None,
        delivery_id: str | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Queue a delivery (due now unless ``next_attempt_at``); returns its id."""
        build_id, owner, _ = self.builds[task_id]
        now = created_at or self.clock()
        delivery_id = delivery_id or f"msg_{next(self._ids):06d}"
        self.rows[delivery_id] = _Row(
            Delivery(
                id=delivery_id,
                build_id=build_id,
                task_id=task_id,
                project_id=owner.project_id,
                project_name=owner.project_name,
                event=event,
                url=url,
                state=DeliveryState.PENDING,
                attempts=0,
                next_attempt_at=next_attempt_at or self.clock(),
                locked_until=None,
                last_error=None,
                created_at=now,
                delivered_at=None,
            ),
            payload,
        )
        return delivery_id

    # -- the port --------------------------------------------------------------------------
    async def claim_due(self, limit: int, lease_seconds: float) -> list[DueDelivery]:
        if limit <= 0:
            return []
        now = self.clock()
        lease = now + timedelta(seconds=lease_seconds)
        due = sorted(
            (
                r
                for r in self.rows.values()
                if r.delivery.state == DeliveryState.PENDING
                and r.delivery.next_attempt_at is not None
                and r.delivery.next_attempt_at <= now
                and (r.delivery.locked_until is None or r.delivery.locked_until <= now)
            ),
            key=lambda r: (r.delivery.next_attempt_at, r.delivery.id),
        )[:limit]
        out = []
        for r in due:
            r.delivery = replace(r.delivery, locked_until=lease)
            d = r.delivery
            _, _, secret = self.builds[d.task_id]
            out.append(
                DueDelivery(d.id, d.task_id, d.event, d.url, r.payload, d.attempts, secret, lease)
            )
        return out

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
        r = self.rows[delivery_id]
        r.attempts.append(attempt)
        d = r.delivery
        if d.state != DeliveryState.PENDING or d.locked_until != lease:
            return False
        r.delivery = replace(
            d,
            state=state,
            attempts=attempts,
            locked_until=None,
            last_error=attempt.error,
            next_attempt_at=next_attempt_at if next_attempt_at is not None else d.next_attempt_at,
            delivered_at=attempt.at if state == DeliveryState.DELIVERED else d.delivered_at,
        )
        return True

    async def release(self, leases: Mapping[str, datetime]) -> None:
        for delivery_id, lease in leases.items():
            r = self.rows.get(delivery_id)
            if r is not None and r.delivery.locked_until == lease:
                r.delivery = replace(r.delivery, locked_until=None)

    async def for_build(self, task_id: str) -> tuple[BuildOwner, list[Delivery]]:
        if task_id not in self.builds:
            raise NotFound(f"no build {task_id!r}")
        _, owner, _ = self.builds[task_id]
        rows = sorted(
            (r for r in self.rows.values() if r.delivery.task_id == task_id),
            key=lambda r: (r.delivery.created_at, r.delivery.id),
        )
        return owner, [self._shown(r) for r in rows]

    async def get(self, delivery_id: str) -> Delivery:
        r = self.rows.get(delivery_id)
        if r is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        return self._shown(r)

    async def redeliver(self, delivery_id: str) -> None:
        r = self.rows.get(delivery_id)
        if r is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        now = self.clock()
        d = r.delivery
        if d.state == DeliveryState.PENDING and d.locked_until and d.locked_until > now:
            raise Conflict("an attempt of this delivery is in flight; try again shortly")
        r.delivery = replace(
            d,
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=now,
            locked_until=None,
            delivered_at=None,
        )

    @staticmethod
    def _shown(r: _Row) -> Delivery:
        return replace(r.delivery, attempt_log=tuple(r.attempts))
