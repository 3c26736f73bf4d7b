"""Row <-> domain conversions and small shared pieces of the SQL stores."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from rdev.domain.errors import Conflict
from rdev.domain.models import Build, BuildResult, BuildSpec, BuildStatus, Project
from rdev.domain.state_machine import check_transition

from .tables import build_events, builds, projects


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def new_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


BUILD_COLUMNS = [*builds.c, projects.c.name.label("project_name")]


def build_select():  # type: ignore[no-untyped-def]
    return select(*BUILD_COLUMNS).select_from(builds.join(projects))


def build_from_row(row: RowMapping, pending_reason: str | None = None) -> Build:
    return Build(
        task_id=row["task_id"],
        project_id=row["project_id"],
        project_name=row["project_name"],
        status=BuildStatus(row["status"]),
        spec=BuildSpec.model_validate(row["spec"]),
        result=BuildResult.model_validate(row["result"]) if row["result"] else None,
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        worker_id=row["worker_id"],
        cancel_requested=row["cancel_requested"],
        rendered_prompt=row["rendered_prompt"],
        template_version=row["template_version"],
        agent_info=row["agent_info"] or {},
        ci=row["ci"],
        pending_reason=pending_reason,
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def project_from_row(row: RowMapping) -> Project:
    return Project(
        id=row["id"],
        name=row["name"],
        repo_url=row["repo_url"],
        default_branch=row["default_branch"],
        has_git_credential=bool(row["git_credential"]),
        default_agent=row["default_agent"],
        labels=row["labels"] or [],
        settings=row["settings"] or {},
        created_at=row["created_at"],
    )


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
    from .outbox import enqueue_for_status  # local: outbox imports this module

    await enqueue_for_status(conn, build_row["id"], to, build_row["spec"] or {})
