"""GET /builds/{task_id}/deliveries and POST /deliveries/{id}/redeliver: build callbacks."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from rdev.api.deps import ContainerDep, PrincipalDep
from rdev.ports.deliveries import Delivery, DeliveryState
from rdev.services.webhooks import WebhookService

if TYPE_CHECKING:
    from rdev.bootstrap import Container

router = APIRouter(tags=["webhooks"])


class AttemptOut(BaseModel):
    at: datetime
    status_code: int | None = Field(description="the receiver's HTTP status; null if none")
    error: str | None = Field(description="why the attempt failed; null on success")
    latency_ms: int
    response_excerpt: str | None = Field(description="the start of the answer (at most 4 KiB)")


class DeliveryOut(BaseModel):
    id: str = Field(description="the webhook-id header of every attempt", examples=["msg_4b1d"])
    task_id: str
    event: str = Field(examples=["build.completed"])
    url: str
    state: Literal["pending", "delivered", "dead"]
    reason: str | None = Field(
        description="why it is not delivered (yet): the last attempt's error; null once "
        "delivered or before the first attempt"
    )
    attempt_count: int = Field(description="attempts in the current cycle (redeliver resets)")
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried next")
    in_flight: bool = Field(description="an attempt is being made right now")
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[AttemptOut] = Field(description="every attempt ever made, oldest first")
    links: dict[str, str]


class DeliveryList(BaseModel):
    task_id: str
    items: list[DeliveryOut]


def _webhooks(c: Container) -> WebhookService:
    return c.webhooks


def delivery_out(d: Delivery) -> DeliveryOut:
    pending = d.state == DeliveryState.PENDING
    return DeliveryOut(
        id=d.id,
        task_id=d.task_id,
        event=d.event,
        url=d.url,
        state=d.state.value,
        reason=None if d.state == DeliveryState.DELIVERED else d.last_error,
        attempt_count=d.attempts,
        next_attempt_at=d.next_attempt_at if pending else None,
        in_flight=pending and d.locked_until is not None,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        attempts=[AttemptOut.model_validate(asdict(a)) for a in d.attempt_log],
        links={
            "build": f"/builds/{d.task_id}",
            "redeliver": f"/deliveries/{d.id}/redeliver",
        },
    )


@router.get("/builds/{task_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(task_id: str, c: ContainerDep, p: PrincipalDep) -> DeliveryList:
    """The build's callback deliveries (one per event), each with every attempt: when, the
    status code, the error, the latency and the start of the answer. ``state`` is
    ``pending`` (will be tried again at ``next_attempt_at``), ``delivered`` or ``dead``
    (gave up: 410 Gone, a refused address, or all attempts failed; ``reason`` says which)."""
    items = await _webhooks(c).list_for_build(p, task_id)
    return DeliveryList(task_id=task_id, items=[delivery_out(d) for d in items])


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202, response_model=DeliveryOut)
async def redeliver(delivery_id: str, c: ContainerDep, p: PrincipalDep) -> DeliveryOut:
    """Send a delivery again, now: a new attempt cycle (up to the configured number of
    attempts) for the SAME delivery, so the same ``webhook-id`` and body; receivers that
    de-duplicate on ``webhook-id`` will treat it as already seen. 409 while an attempt is
    in flight."""
    return delivery_out(await _webhooks(c).redeliver(p, delivery_id))
