"""Storage of project aliases (the ``domains`` table) for the DomainService.

An alias row is first *reserved* (state ``pending``) under the unique constraint on
``domain``, so two projects racing for one name are decided by the database before any
DNS traffic; the service then places the CNAME and marks the row ``active``. Rows are
plain dicts (the table's columns plus ``project_name``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rdev.domain.errors import NotFound

from .engine import Database
from .rows import utcnow
from .tables import domains, projects

_COLUMNS = [*domains.c, projects.c.name.label("project_name")]


def _select():  # type: ignore[no-untyped-def]
    return select(*_COLUMNS).select_from(domains.join(projects))


class SqlDomainStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, domain: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(_select().where(domains.c.domain == domain))).mappings().first()
            )
        return dict(row) if row else None

    async def list(
        self, project_ids: list[str] | None = None, states: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Aliases, ordered by project then name; ``None`` filters mean all."""
        stmt = _select().order_by(projects.c.name, domains.c.domain)
        if project_ids is not None:
            stmt = stmt.where(domains.c.project_id.in_(project_ids))
        if states is not None:
            stmt = stmt.where(domains.c.state.in_(states))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [dict(r) for r in rows]

    async def reserve(
        self,
        *,
        project_id: str,
        domain: str,
        unicode: str,
        target: str,
        limit: int,
        stale_before: datetime,
    ) -> tuple[str, dict[str, Any]]:
        """Claim ``domain`` for the project in state ``pending``.

        Returns ``("reserved", row)`` when this call now holds the row (new, or a stale
        ``pending`` row of the same project taken over), ``("exists", row)`` when a row for
        the name is already there (any project, any state), or ``("limit", {"count": n})``.
        Raises NotFound when the project no longer exists. The project row is locked
        (PostgreSQL) or the writer serialised (SQLite), so the limit holds under concurrency.
        """
        for _ in range(3):
            try:
                return await self._reserve_once(
                    project_id, domain, unicode, target, limit, stale_before
                )
            except IntegrityError:
                # A concurrent request inserted the same name first (PostgreSQL): report it.
                row = await self.get(domain)
                if row is not None:
                    return "exists", row
                # ...and it is already gone again (its DNS update failed): try once more.
        raise RuntimeError(f"could not reserve {domain!r}: it keeps changing hands")

    async def _reserve_once(
        self,
        project_id: str,
        domain: str,
        unicode: str,
        target: str,
        limit: int,
        stale_before: datetime,
    ) -> tuple[str, dict[str, Any]]:
        async with self.db.write() as conn:
            owner = (
                await conn.execute(
                    self.db.dialect.lock_row(
                        select(projects.c.id, projects.c.name).where(projects.c.id == project_id)
                    )
                )
            ).first()
            if owner is None:
                raise NotFound(f"no project {project_id!r}")
            found = (
                (await conn.execute(_select().where(domains.c.domain == domain))).mappings().first()
            )
            if found is not None:
                row = dict(found)
                takeover = (
                    row["project_id"] == project_id
                    and row["state"] == "pending"
                    and row["created_at"] < stale_before
                )
                if not takeover:
                    return "exists", row
                now = utcnow()
                await conn.execute(
                    update(domains).where(domains.c.id == row["id"]).values(created_at=now)
                )
                return "reserved", {**row, "created_at": now}
            count = (
                await conn.execute(
                    select(func.count())
                    .select_from(domains)
                    .where(domains.c.project_id == project_id)
                )
            ).scalar_one()
            if count >= limit:
                return "limit", {"count": count}
            now = utcnow()
            result = await conn.execute(
                insert(domains).values(
                    project_id=project_id,
                    domain=domain,
                    unicode=unicode,
                    target=target,
                    state="pending",
                    created_at=now,
                )
            )
            row_id = result.inserted_primary_key[0]  # type: ignore[index]
        return "reserved", {
            "id": row_id,
            "project_id": project_id,
            "project_name": owner.name,
            "domain": domain,
            "unicode": unicode,
            "target": target,
            "state": "pending",
            "created_at": now,
        }

    async def set_state(self, row_id: int, state: str, *, expect: str) -> bool:
        """Move the row from ``expect`` to ``state``; False when it is gone or moved on."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(domains)
                .where(domains.c.id == row_id, domains.c.state == expect)
                .values(state=state)
            )
        return bool(result.rowcount == 1)

    async def delete(self, row_id: int, *, expect: str | None = None) -> bool:
        """Delete the row (only while in state ``expect``, if given); False when not there."""
        stmt = delete(domains).where(domains.c.id == row_id)
        if expect is not None:
            stmt = stmt.where(domains.c.state == expect)
        async with self.db.write() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount == 1)
