"""Storage of Idempotency-Key answers (the ``idempotency_keys`` table: key + scope -> response).

A request first *reserves* its key (a ``pending`` response, under the primary key on
``(key, scope)``), so two racing retries are decided by the database; the first then stores
its final answer, or releases the key when it failed so a retry may try again. A pending
reservation older than ``stale_after`` seconds belongs to a request that died mid-way (a
killed server) and is taken over.

The ``response`` column holds ``{"state", "fingerprint", **answer}`` (one flat JSON object).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from rdev.ports.idempotency import StoredAnswer

from .engine import Database
from .stamps import utcnow
from .tables import idempotency_keys


def _answer(response: dict[str, Any]) -> StoredAnswer:
    rest = {k: v for k, v in response.items() if k not in ("state", "fingerprint")}
    state: Literal["pending", "done"] = "done" if response.get("state") == "done" else "pending"
    return StoredAnswer(state=state, fingerprint=str(response.get("fingerprint")), answer=rest)


class SqlIdempotencyStore:
    def __init__(
        self,
        db: Database,
        *,
        stale_after: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.stale_after = stale_after
        self.clock = clock

    async def reserve(self, key: str, scope: str, fingerprint: str) -> StoredAnswer | None:
        pending = {"state": "pending", "fingerprint": fingerprint}
        for _ in range(2):
            try:
                async with self.db.write() as conn:
                    await conn.execute(
                        insert(idempotency_keys).values(
                            key=key, scope=scope, response=pending, created_at=self.clock()
                        )
                    )
                return None
            except IntegrityError:
                pass
            row = await self._get(key, scope)
            if row is None:
                continue  # released in between: try again
            response, created_at = row
            stale = self.clock() - created_at > timedelta(seconds=self.stale_after)
            if response.get("state") == "pending" and stale:
                await self.release(key, scope)
                continue
            return _answer(response)
        return StoredAnswer(state="pending", fingerprint=fingerprint)

    async def complete(
        self, key: str, scope: str, fingerprint: str, answer: dict[str, Any]
    ) -> None:
        response = {"state": "done", "fingerprint": fingerprint, **answer}
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

    async def _get(self, key: str, scope: str) -> tuple[dict[str, Any], datetime] | None:
        stmt = select(idempotency_keys.c.response, idempotency_keys.c.created_at).where(
            idempotency_keys.c.key == key, idempotency_keys.c.scope == scope
        )
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).first()
        return (dict(row[0]), row[1]) if row else None
