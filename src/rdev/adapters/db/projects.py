"""Project storage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from rdev.domain.errors import Conflict, NotFound
from rdev.domain.models import BuildStatus, Project

from .engine import Database
from .rows import new_id, project_from_row, utcnow
from .tables import builds, projects


class SqlProjectStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        *,
        name: str,
        repo_url: str,
        default_branch: str,
        git_credential: str | None,
        default_agent: str | None = None,
        labels: list[str] | None = None,
        settings: dict[str, Any] | None = None,
        webhook_secret: str | None = None,
        ci_token: str | None = None,
        repo_host: str | None = None,
    ) -> Project:
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
                        git_credential=git_credential,
                        default_agent=default_agent,
                        labels=labels or [],
                        settings=settings or {},
                        webhook_secret=webhook_secret,
                        ci_token=ci_token,
                        repo_host=repo_host,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(f"a project named {name!r} already exists", field="name") from exc
        return await self.get(pid)

    async def get_row(self, ref: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(projects).where(or_(projects.c.id == ref, projects.c.name == ref))
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no project {ref!r}")
        return dict(row)

    async def get(self, ref: str) -> Project:
        return project_from_row(await self.get_row(ref))  # type: ignore[arg-type]

    async def list(self, only: list[str] | None = None) -> list[Project]:
        stmt = select(projects).order_by(projects.c.name)
        if only is not None:
            stmt = stmt.where(or_(projects.c.id.in_(only), projects.c.name.in_(only)))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [project_from_row(r) for r in rows]

    async def update(self, project_id: str, **values: Any) -> Project:
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
