"""Storage of Idempotency-Key answers (the ``idempotency_keys`` table: key + scope -> response).

A request first *reserves* its key (a ``pending`` response, under the primary key on
``(key, scope)``), so two racing retries are decided by the database; the first then stores
its final answer, or releases the key when it failed so a retry may try again. A pending
reservation older than ``stale_after`` seconds belongs to a request that died mid-way (a
killed server) and is taken over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .engine import Database
from .rows import utcnow
from .tables import idempotency_keys


class SqlIdempotencyStore:
    def __init__(self, db: Database, *, stale_after: float = 600.0) -> None:
        self.db = db
        self.stale_after = stale_after

    async def reserve(self, key: str, scope: str, fingerprint: str) -> dict[str, Any] | None:
        """Reserve ``key``; None when this caller got it, else the stored response.

        The stored response is ``{"state": "pending" | "done", "fingerprint": ..., ...}``.
        """
        pending = {"state": "pending", "fingerprint": fingerprint}
        for _ in range(2):
            try:
                async with self.db.write() as conn:
                    await conn.execute(
                        insert(idempotency_keys).values(
                            key=key, scope=scope, response=pending, created_at=utcnow()
                        )
                    )
                return None
            except IntegrityError:
                pass
            row = await self._get(key, scope)
            if row is None:
                continue  # released in between: try again
            stale = utcnow() - row["created_at"] > timedelta(seconds=self.stale_after)
            if row["response"].get("state") == "pending" and stale:
                await self.release(key, scope)
                continue
            return dict(row["response"])
        return {"state": "pending", "fingerprint": fingerprint}

    async def complete(self, key: str, scope: str, response: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.key == key, idempotency_keys.c.scope == scope)
                .values(response=response)
            )

    async def release(self, key: str, scope: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.key == key, idempotency_keys.c.scope == scope
                )
            )

    async def _get(self, key: str, scope: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(idempotency_keys).where(
                            idempotency_keys.c.key == key, idempotency_keys.c.scope == scope
                        )
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None
