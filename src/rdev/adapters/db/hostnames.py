"""Storage of project aliases (the ``domains`` table): the HostnameStore port in SQL.

An alias row is first *reserved* (state ``pending``) under the unique constraint on
``domain``, so two projects racing for a name are decided by the database before any DNS
traffic; the service then places the CNAME and marks the row ``active``. The table keeps its
name from the public API (``/projects/{id}/domains``); rows leave here as AliasRecords.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rdev.domain.errors import AliasBusy, NotFound
from rdev.domain.hostnames import AliasRecord, AliasState
from rdev.ports.hostnames import AlreadyThere, LimitReached, Reservation, Reserved

from .engine import Database
from .stamps import utcnow
from .tables import domains, projects

_COLUMNS = [*domains.c, projects.c.name.label("project_name")]


def _select() -> Select[Any]:
    return select(*_COLUMNS).select_from(domains.join(projects))


def _record(row: Mapping[str, Any]) -> AliasRecord:
    return AliasRecord(
        id=row["id"],
        project_id=row["project_id"],
        project_name=row["project_name"],
        domain=row["domain"],
        unicode=row["unicode"],
        target=row["target"],
        state=AliasState(row["state"]),
        created_at=row["created_at"],
    )


class SqlHostnameStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, domain: str) -> AliasRecord | None:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(_select().where(domains.c.domain == domain))).mappings().first()
            )
        return _record(row) if row else None

    async def list(
        self,
        project_ids: Sequence[str] | None = None,
        states: Sequence[AliasState] | None = None,
    ) -> builtins.list[AliasRecord]:
        """Aliases, ordered by project then name; ``None`` filters mean all."""
        stmt = _select().order_by(projects.c.name, domains.c.domain)
        if project_ids is not None:
            stmt = stmt.where(domains.c.project_id.in_(list(project_ids)))
        if states is not None:
            stmt = stmt.where(domains.c.state.in_([str(s) for s in states]))
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_record(r) for r in rows]

    async def reserve(
        self,
        *,
        project_id: str,
        domain: str,
        unicode: str,
        target: str,
        limit: int,
        stale_before: datetime,
    ) -> Reservation:
        """Claim ``domain`` for the project in state ``pending`` (see the port).

        The project row is locked (PostgreSQL) or the writer serialised (SQLite), so the
        limit holds under concurrency.
        """
        for _ in range(3):
            try:
                return await self._reserve_once(
                    project_id, domain, unicode, target, limit, stale_before
                )
            except IntegrityError:
                # A concurrent request inserted the same name first (PostgreSQL): report it.
                found = await self.get(domain)
                if found is not None:
                    return AlreadyThere(found)
                # ...and it is already gone again (its DNS update failed): try once more.
        # Every attempt met a row that was gone again when read back.
        raise AliasBusy(
            f"could not reserve {domain!r}: it keeps changing hands; retry shortly",
            field="domain",
        )

    async def _reserve_once(
        self,
        project_id: str,
        domain: str,
        unicode: str,
        target: str,
        limit: int,
        stale_before: datetime,
    ) -> Reservation:
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
                existing = _record(found)
                takeover = (
                    existing.project_id == project_id
                    and existing.state is AliasState.PENDING
                    and existing.created_at < stale_before
                )
                if not takeover:
                    return AlreadyThere(existing)
                now = utcnow()
                await conn.execute(
                    update(domains).where(domains.c.id == existing.id).values(created_at=now)
                )
                return Reserved(_record({**found, "created_at": now}))
            count = (
                await conn.execute(
                    select(func.count())
                    .select_from(domains)
                    .where(domains.c.project_id == project_id)
                )
            ).scalar_one()
            if count >= limit:
                return LimitReached(count)
            now = utcnow()
            result = await conn.execute(
                insert(domains).values(
                    project_id=project_id,
                    domain=domain,
                    unicode=unicode,
                    target=target,
                    state=AliasState.PENDING.value,
                    created_at=now,
                )
            )
            row_id = result.inserted_primary_key[0]  # type: ignore[index]
        return Reserved(
            AliasRecord(
                id=row_id,
                project_id=project_id,
                project_name=owner.name,
                domain=domain,
                unicode=unicode,
                target=target,
                state=AliasState.PENDING,
                created_at=now,
            )
        )

    async def set_state(self, alias_id: int, state: AliasState, *, expect: AliasState) -> bool:
        """Move the row from ``expect`` to ``state``; False when it is gone or moved on."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(domains)
                .where(domains.c.id == alias_id, domains.c.state == expect.value)
                .values(state=state.value)
            )
        return bool(result.rowcount == 1)

    async def delete(self, alias_id: int, *, expect: AliasState | None = None) -> bool:
        """Delete the row (only while in state ``expect``, if given); False when not there."""
        stmt = delete(domains).where(domains.c.id == alias_id)
        if expect is not None:
            stmt = stmt.where(domains.c.state == expect.value)
        async with self.db.write() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount == 1)
