"""Build storage: submit (build + work task + first event in one transaction), reads, cancel."""

from __future__ import annotations

import builtins

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from rdev.domain.errors import NotFound
from rdev.domain.models import Build, BuildEvent, BuildSpec, BuildStatus
from rdev.ports.builds import LogChunk

from .build_rows import build_from_row, build_select
from .dialects import QUEUED, NewBuild
from .engine import Database
from .notify import WorkNotifier, wake_payload
from .stamps import new_id, utcnow
from .tables import build_events, build_logs, builds, work_tasks
from .transitions import transition


class SqlBuildStore:
    def __init__(self, db: Database, notifier: WorkNotifier) -> None:
        self.db = db
        self.notifier = notifier

    async def submit(
        self,
        *,
        project_id: str,
        spec: BuildSpec,
        agent: str,
        labels: list[str],
        rendered_prompt: str,
        template_name: str | None,
        template_version: str | None,
        max_attempts: int,
        idempotency_key: str | None,
        actor: str,
        project_name: str | None = None,
    ) -> tuple[Build, bool]:
        """Write build_audit row, work task and first event atomically. Returns (build, created).

        With an ``idempotency_key`` already used for this project, the first build is
        returned and nothing is written: the unique key refuses the insert. (The service
        looks the key up before it resolves defaults; this covers concurrent retries.)
        """
        task_id = new_id()
        now = utcnow()
        labels = sorted(set(labels))
        row = {
            "task_id": task_id,
            "project_id": project_id,
            "status": BuildStatus.PENDING.value,
            "spec": spec.model_dump(mode="json"),
            "attempts": 0,
            "max_attempts": max_attempts,
            "retries": 0,
            "cancel_requested": False,
            "rendered_prompt": rendered_prompt,
            "template_name": template_name,
            "template_version": template_version,
            "agent_info": {"agent": agent},
            "idempotency_key": idempotency_key,
            "created_by": actor,
            "created_at": now,
        }
        task = {
            "task_id": task_id,
            "state": QUEUED,
            "agent": agent,
            "labels": labels,
            "labels_key": ",".join(labels),
            "available_at": now,
        }
        event = {
            "from_status": None,
            "to_status": BuildStatus.PENDING.value,
            "at": now,
            "actor": actor,
            "reason": "submitted",
        }
        new = NewBuild(
            build=row, task=task, event=event, wake=wake_payload(agent, ",".join(labels))
        )
        try:
            await self.db.dialect.submit(self.db, new)
        except IntegrityError:
            if idempotency_key:
                existing = await self.by_idempotency_key(project_id, idempotency_key)
                if existing:
                    return existing, False
            raise
        self.notifier.wake_for(agent, labels)
        # Built from what was just written: no read-back query on the hot path.
        return Build(
            task_id=task_id,
            project_id=project_id,
            project_name=project_name or "",
            status=BuildStatus.PENDING,
            spec=spec,
            max_attempts=max_attempts,
            rendered_prompt=rendered_prompt,
            template_version=template_version,
            agent_info={"agent": agent},
            created_at=now,
        ), True

    async def by_idempotency_key(self, project_id: str, key: str) -> Build | None:
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        build_select().where(
                            builds.c.project_id == project_id, builds.c.idempotency_key == key
                        )
                    )
                )
                .mappings()
                .first()
            )
        return build_from_row(row) if row else None

    async def get(self, task_id: str) -> Build:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(build_select().where(builds.c.task_id == task_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no build {task_id!r}")
        return build_from_row(row)

    async def pending_agent(self, task_id: str) -> str | None:
        async with self.db.read() as conn:
            return (
                await conn.execute(
                    select(work_tasks.c.agent).where(
                        work_tasks.c.task_id == task_id, work_tasks.c.state == QUEUED
                    )
                )
            ).scalar()

    async def list(
        self,
        *,
        project_id: str | None,
        statuses: builtins.list[str] | None,
        limit: int,
        cursor: int | None,
        project_ids: builtins.list[str] | None = None,
    ) -> tuple[builtins.list[Build], int | None]:
        """Newest first; ``cursor`` is the internal id of the last build of the previous page."""
        stmt = build_select().order_by(builds.c.id.desc()).limit(limit + 1)
        if project_id:
            stmt = stmt.where(builds.c.project_id == project_id)
        if project_ids is not None:
            stmt = stmt.where(builds.c.project_id.in_(project_ids))
        if statuses:
            stmt = stmt.where(builds.c.status.in_(statuses))
        if cursor is not None:
            stmt = stmt.where(builds.c.id < cursor)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        next_cursor = rows[limit - 1]["id"] if len(rows) > limit else None
        return [build_from_row(r) for r in rows[:limit]], next_cursor

    async def events(self, task_id: str) -> builtins.list[BuildEvent]:
        async with self.db.read() as conn:
            rows = (
                (
                    await conn.execute(
                        select(build_events, builds.c.task_id)
                        .select_from(build_events.join(builds))
                        .where(builds.c.task_id == task_id)
                        .order_by(build_events.c.id)
                    )
                )
                .mappings()
                .all()
            )
        return [
            BuildEvent(
                seq=i + 1,
                task_id=r["task_id"],
                from_status=r["from_status"],
                to_status=r["to_status"],
                at=r["at"],
                actor=r["actor"],
                reason=r["reason"],
            )
            for i, r in enumerate(rows)
        ]

    async def logs(
        self, task_id: str, since: int = 0, limit: int = 5000
    ) -> builtins.list[LogChunk]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        build_logs.c.seq,
                        build_logs.c.attempt,
                        build_logs.c.stream,
                        build_logs.c.text,
                        build_logs.c.at,
                    )
                    .select_from(build_logs.join(builds))
                    .where(builds.c.task_id == task_id, build_logs.c.seq > since)
                    .order_by(build_logs.c.seq)
                    .limit(limit)
                )
            ).all()
        return [
            LogChunk(seq=r.seq, attempt=r.attempt, stream=r.stream, text=r.text, at=r.at)
            for r in rows
        ]

    async def cancel(self, task_id: str, actor: str) -> Build:
        """pending -> cancelled at once; running -> cancel requested (the worker finishes it)."""
        async with self.db.write() as conn:
            row = (
                (
                    await conn.execute(
                        self.db.dialect.lock_row(
                            build_select().where(builds.c.task_id == task_id), of=builds
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no build {task_id!r}")
            status = BuildStatus(row["status"])
            if status == BuildStatus.PENDING:
                await transition(conn, row, BuildStatus.CANCELLED, actor=actor, reason="cancelled")
                await conn.execute(delete(work_tasks).where(work_tasks.c.build_id == row["id"]))
            elif status == BuildStatus.RUNNING:
                if not row["cancel_requested"]:
                    await conn.execute(
                        update(builds).where(builds.c.id == row["id"]).values(cancel_requested=True)
                    )
            else:
                # Refused by the state machine with a clear message.
                await transition(conn, row, BuildStatus.CANCELLED, actor=actor)
        return await self.get(task_id)
