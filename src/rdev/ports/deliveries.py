"""The delivery store port: the webhook outbox as the dispatcher and the deliveries API use it.

Outbox rows are written with the status change they announce (``adapters/db/outbox.py``);
this port is everything afterwards. A dispatcher leases due deliveries (two dispatchers never
hold the same one), and the lease value is the claim's token: an attempt is always recorded,
but the delivery's state changes only while the claim still holds its lease, so a replica
whose lease ran out never overwrites a newer claim. Implementations:
``adapters/db/deliveries.py`` (SQLite, PostgreSQL) and ``tests/fakes/deliveries.py``, held
to one contract by ``tests/contract/test_deliveries_store.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import SecretStr


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True)
class DueDelivery:
    """A leased delivery, with what one attempt needs."""

    id: str
    task_id: str
    event: str
    url: str
    #: The body, byte for byte the same on every attempt.
    payload: str
    #: Attempts made in the current cycle before this one.
    attempts: int
    #: The project's signing secret; None when the project has none.
    secret: SecretStr | None
    #: The lease's expiry: the token for :meth:`DeliveryStore.settle` and ``release``.
    lease: datetime


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST and what came of it."""

    at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int
    response_excerpt: str | None


@dataclass(frozen=True)
class Delivery:
    """A delivery as the API shows it, with every attempt ever made (oldest first)."""

    id: str
    build_id: int
    task_id: str
    project_id: str
    project_name: str
    event: str
    url: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    locked_until: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: tuple[DeliveryAttempt, ...] = ()


@dataclass(frozen=True)
class BuildOwner:
    """The build deliveries belong to, for the project check."""

    task_id: str
    project_id: str
    project_name: str


class DeliveryStore(Protocol):
    async def claim_due(self, limit: int, lease_seconds: float) -> list[DueDelivery]:
        """Lease up to ``limit`` pending deliveries that are due and unleased, earliest due
        first (ties by id)."""
        ...

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
        """Record ``attempt`` and, if the claim still holds ``lease``, the new state (the
        lease is released). False when the lease was lost; the attempt is recorded anyway."""
        ...

    async def release(self, leases: Mapping[str, datetime]) -> None:
        """Hand leases back without an attempt (shutdown): due again at once."""
        ...

    async def for_build(self, task_id: str) -> tuple[BuildOwner, list[Delivery]]:
        """The build and its deliveries, oldest first. NotFound for an unknown build."""
        ...

    async def get(self, delivery_id: str) -> Delivery:
        """NotFound for an unknown delivery."""
        ...

    async def redeliver(self, delivery_id: str) -> None:
        """A new attempt cycle (attempts 0, pending, due now) under the same id and body.
        Conflict while an attempt is in flight, NotFound for an unknown delivery."""
        ...
