"""Project storage: the ``projects`` table behind the ProjectStore port."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from rdev.domain.errors import Conflict, NotFound
from rdev.domain.models import BuildStatus
from rdev.ports.projects import ProjectChanges, ProjectRecord, reveal

from .engine import Database
from .stamps import new_id, utcnow
from .tables import builds, projects

_SECRET_COLUMNS = ("git_credential", "ci_token", "webhook_secret")


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


def project_record(row: RowMapping) -> ProjectRecord:
    """A ``projects`` row as the domain record (secrets wrapped)."""
    return ProjectRecord(
        id=row["id"],
        name=row["name"],
        repo_url=row["repo_url"],
        default_branch=row["default_branch"],
        created_at=row["created_at"],
        default_agent=row["default_agent"],
        labels=tuple(row["labels"] or ()),
        settings=dict(row["settings"] or {}),
        git_credential=_secret(row["git_credential"]),
        ci_token=_secret(row["ci_token"]),
        webhook_secret=_secret(row["webhook_secret"]),
        repo_host=row["repo_host"],
    )


class SqlProjectStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        *,
        name: str,
        repo_url: str,
        default_branch: str,
        git_credential: SecretStr | None,
        default_agent: str | None = None,
        labels: Sequence[str] = (),
        settings: Mapping[str, Any] | None = None,
        webhook_secret: SecretStr | None = None,
        ci_token: SecretStr | None = None,
        repo_host: str | None = None,
    ) -> ProjectRecord:
        now = utcnow()
        pid = new_id()
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    insert(projects).values(
                        id=pid,
                        name=name,
                        repo_url=repo_url,
                        default_branch=default_branch,
                        git_credential=reveal(git_credential),
                        default_agent=default_agent,
                        labels=list(labels),
                        settings=dict(settings or {}),
                        webhook_secret=reveal(webhook_secret),
                        ci_token=reveal(ci_token),
                        repo_host=repo_host,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(f"a project named {name!r} already exists", field="name") from exc
        return await self.get(pid)

    async def get(self, ref: str) -> ProjectRecord:
        stmt = select(projects).where(or_(projects.c.id == ref, projects.c.name == ref))
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise NotFound(f"no project {ref!r}")
        return project_record(row)

    async def list(self, only: builtins.list[str] | None = None) -> builtins.list[ProjectRecord]:
        stmt = select(projects).order_by(projects.c.name)
        if only is not None:
            stmt = stmt.where(or_(projects.c.id.in_(only), projects.c.name.in_(only)))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [project_record(r) for r in rows]

    async def update(self, project_id: str, changes: ProjectChanges) -> ProjectRecord:
        values: dict[str, Any] = dict(changes)
        for column in _SECRET_COLUMNS:
            if column in values:
                values[column] = reveal(values[column])
        values["updated_at"] = utcnow()
        async with self.db.write() as conn:
            await conn.execute(update(projects).where(projects.c.id == project_id).values(**values))
        return await self.get(project_id)

    async def delete(self, project_id: str) -> None:
        async with self.db.write() as conn:
            active = (
                await conn.execute(
                    select(builds.c.task_id)
                    .where(
                        builds.c.project_id == project_id,
                        builds.c.status == BuildStatus.RUNNING.value,
                    )
                    .limit(1)
                )
            ).first()
            if active:
                raise Conflict("the project has running builds; cancel them first")
            await conn.execute(delete(projects).where(projects.c.id == project_id))
