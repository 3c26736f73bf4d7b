"""Reading builds: the columns a :class:`~rdev.domain.models.Build` is made of, and the
conversion of such a row (shared by the build store, the queue and the outbox)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import RowMapping

from rdev.domain.models import Build, BuildResult, BuildSpec, BuildStatus

from .tables import builds, projects

BUILD_COLUMNS = [*builds.c, projects.c.name.label("project_name")]


def build_select() -> Select[Any]:
    """``SELECT`` of :data:`BUILD_COLUMNS` from builds joined with their project."""
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
