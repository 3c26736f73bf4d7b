"""Moving a build between states in SQL: the state machine's check, a compare-and-set
UPDATE, the audit event and the callback outbox rows, all on the caller's connection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from rdev.domain.errors import Conflict
from rdev.domain.models import BuildStatus
from rdev.domain.state_machine import check_transition

from .outbox import enqueue_for_status
from .stamps import utcnow
from .tables import build_events, builds


async def transition(
    conn: AsyncConnection,
    build_row: RowMapping,
    to: BuildStatus,
    *,
    actor: str,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
) -> None:
    """Move a build to ``to`` if the state machine allows it, and append the audit event.

    The UPDATE is a compare-and-set on the status read earlier, so two racing writers
    can never both move the same build: the loser gets a Conflict.
    """
    src = BuildStatus(build_row["status"])
    check_transition(src, to)
    now = utcnow()
    vals = dict(values or {})
    vals["status"] = to.value
    if to.is_final:
        vals.setdefault("finished_at", now)
    res = await conn.execute(
        update(builds)
        .where(builds.c.id == build_row["id"], builds.c.status == src.value)
        .values(**vals)
    )
    if res.rowcount != 1:
        raise Conflict("the build changed concurrently; try again")
    await conn.execute(
        insert(build_events).values(
            build_id=build_row["id"],
            from_status=src.value,
            to_status=to.value,
            at=now,
            actor=actor,
            reason=reason,
        )
    )
    await enqueue_for_status(conn, build_row["id"], to, build_row["spec"] or {})
