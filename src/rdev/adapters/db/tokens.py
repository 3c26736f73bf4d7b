"""API token storage: only SHA-256 hashes of the (high-entropy, random) tokens are kept."""

from __future__ import annotations

import builtins

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping

from rdev.ports.tokens import ApiToken, hash_token

from .engine import Database
from .stamps import new_id, utcnow
from .tables import api_tokens


def _token(row: RowMapping) -> ApiToken:
    return ApiToken(
        id=row["id"],
        name=row["name"],
        scopes=tuple(row["scopes"] or ()),
        projects=tuple(row["projects"]) if row["projects"] is not None else None,
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class SqlTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        *,
        name: str,
        token: str,
        scopes: builtins.list[str],
        projects: builtins.list[str] | None,
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

    async def lookup(self, token: str) -> ApiToken | None:
        stmt = select(api_tokens).where(
            api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return _token(row) if row else None

    async def count(self) -> int:
        async with self.db.read() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(api_tokens))).scalar_one()
            )

    async def list(self) -> builtins.list[ApiToken]:
        stmt = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_token(r) for r in rows]

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
