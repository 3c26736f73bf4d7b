"""API token storage: only SHA-256 hashes of the (high-entropy, random) tokens are kept."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import insert, select, update

from .engine import Database
from .rows import new_id, utcnow
from .tables import api_tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SqlTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, *, name: str, token: str, scopes: list[str], projects: list[str] | None
    ) -> str:
        tid = new_id()
        async with self.db.write() as conn:
            await conn.execute(
                insert(api_tokens).values(
                    id=tid,
                    name=name,
                    token_hash=hash_token(token),
                    scopes=scopes,
                    projects=projects,
                    created_at=utcnow(),
                )
            )
        return tid

    async def lookup(self, token: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(api_tokens).where(
                            api_tokens.c.token_hash == hash_token(token),
                            api_tokens.c.revoked_at.is_(None),
                        )
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    async def count(self) -> int:
        async with self.db.read() as conn:
            return len((await conn.execute(select(api_tokens.c.id))).all())

    async def list(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (
                (await conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)))
                .mappings()
                .all()
            )
        return [{k: v for k, v in r.items() if k != "token_hash"} for r in rows]

    async def revoke_named(self, name: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(api_tokens)
                .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    async def revoke(self, token_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=utcnow())
            )
