"""The webhook outbox: delivery rows written in the same transaction as the status change.

A background dispatcher sends them later (signed, retried). Because the row commits or
rolls back with the status itself, a crash can never lose a callback or invent one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from rdev.adapters.webhooks.payload import EVENT_FOR_FINAL_STATUS, event_body, new_message_id
from rdev.domain.models import DEFAULT_WEBHOOK_EVENTS, BuildStatus

from .build_rows import build_from_row, build_select
from .stamps import utcnow
from .tables import builds, webhook_deliveries


def wanted(spec: Mapping[str, Any], event: str) -> bool:
    """Whether the build's spec asks for ``event`` (its ``events``, else the defaults)."""
    events = spec.get("events")
    return event in (events if events is not None else DEFAULT_WEBHOOK_EVENTS)


async def enqueue(conn: AsyncConnection, build_id: int, event: str) -> str | None:
    """Queue ``event`` for the build's callback URL if it has one and asked for it."""
    row = (await conn.execute(build_select().where(builds.c.id == build_id))).mappings().one()
    spec = row["spec"] or {}
    url = spec.get("callback_url")
    if not url or not wanted(spec, event):
        return None
    now = utcnow()
    delivery_id = new_message_id()
    await conn.execute(
        insert(webhook_deliveries).values(
            id=delivery_id,
            build_id=build_id,
            event=event,
            url=url,
            payload=event_body(event, build_from_row(row), now).decode("utf-8"),
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return delivery_id


async def enqueue_for_status(
    conn: AsyncConnection, build_id: int, to: BuildStatus, spec: Mapping[str, Any]
) -> None:
    """Queue the event a status change announces (a final status, or ``running``)."""
    if not spec.get("callback_url"):
        return
    if to in EVENT_FOR_FINAL_STATUS:
        await enqueue(conn, build_id, EVENT_FOR_FINAL_STATUS[to])
    elif to == BuildStatus.RUNNING:
        await enqueue(conn, build_id, "build.started")
