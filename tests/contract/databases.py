"""The real backends a contract suite runs on, next to its in-memory fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from rdev.adapters.db.engine import Database
from rdev.adapters.db.migrate import upgrade
from tests.conftest import drop_pg_schema, make_pg_schema

#: Every contract suite runs once per implementation: the fake and both SQL backends.
IMPLEMENTATIONS = ["fake", "sqlite", "postgresql"]


@asynccontextmanager
async def migrated_database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, migrated SQLite file or PostgreSQL schema, removed afterwards."""
    schema = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'rdev.db'}"
    else:
        url, schema = make_pg_schema()
    db = Database(url)
    try:
        await upgrade(db.engine)
        yield db
    finally:
        await db.dispose()
        if schema:
            drop_pg_schema(schema)
