"""Worker registry storage."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from rdev.domain.errors import NotFound, StorageContention
from rdev.domain.models import WorkerInfo
from rdev.ports.workers import WorkerRecord

from .engine import Database
from .stamps import new_id, utcnow
from .tables import workers


class SqlWorkerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def register(
        self,
        *,
        name: str,
        hostname: str | None,
        labels: list[str],
        agents: list[str],
        agent_notes: dict[str, str],
        slots: int,
        version: str | None,
    ) -> str:
        """Idempotent by name: re-registering updates the row and keeps the id."""
        now = utcnow()
        values: dict[str, Any] = dict(
            hostname=hostname,
            labels=labels,
            agents=agents,
            agent_notes=agent_notes,
            slots=slots,
            version=version,
            last_heartbeat_at=now,
            stopped_at=None,
        )
        for _ in range(3):
            async with self.db.write() as conn:
                wid = (
                    await conn.execute(select(workers.c.id).where(workers.c.name == name))
                ).scalar()
                if wid:
                    await conn.execute(update(workers).where(workers.c.id == wid).values(**values))
                    return str(wid)
            try:
                wid = new_id()
                async with self.db.write() as conn:
                    await conn.execute(
                        insert(workers).values(
                            id=wid, name=name, registered_at=now, current_tasks=[], **values
                        )
                    )
                return wid
            except IntegrityError:
                continue  # registered concurrently under the same name: update that row
        raise StorageContention(f"could not register worker {name!r}: registered concurrently")

    async def get(self, worker_id: str) -> WorkerRecord:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        workers.c.id,
                        workers.c.name,
                        workers.c.agents,
                        workers.c.labels,
                        workers.c.slots,
                    ).where(workers.c.id == worker_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no worker {worker_id!r}")
        return WorkerRecord(
            id=row.id,
            name=row.name,
            agents=list(row.agents or []),
            labels=list(row.labels or []),
            slots=row.slots,
        )

    async def touch(self, worker_id: str, current_tasks: list[str]) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(workers)
                .where(workers.c.id == worker_id)
                .values(last_heartbeat_at=utcnow(), current_tasks=current_tasks, stopped_at=None)
            )

    async def mark_stopped(self, worker_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(workers)
                .where(workers.c.id == worker_id)
                .values(stopped_at=utcnow(), current_tasks=[])
            )

    async def list(self, offline_after_seconds: float) -> list[WorkerInfo]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(workers).order_by(workers.c.name))).mappings().all()
        cutoff = utcnow() - timedelta(seconds=offline_after_seconds)
        return [
            WorkerInfo(
                id=r["id"],
                name=r["name"],
                hostname=r["hostname"],
                labels=r["labels"] or [],
                agents=r["agents"] or [],
                agent_notes=r["agent_notes"] or {},
                slots=r["slots"],
                version=r["version"],
                online=bool(
                    r["last_heartbeat_at"]
                    and r["last_heartbeat_at"] >= cutoff
                    and r["stopped_at"] is None
                ),
                last_heartbeat_at=r["last_heartbeat_at"],
                registered_at=r["registered_at"],
                current_tasks=r["current_tasks"] or [],
            )
            for r in rows
        ]
