"""Alembic migrations produce exactly the schema of ``rdev.adapters.db.tables`` on both
backends, and ``rdev migrate`` on a fresh data dir succeeds and is idempotent.

The comparison is Alembic's own autogenerate diff (``compare_metadata``) between the
migrated database and the declared metadata: any table, column, type, nullability, index,
unique or foreign key that a migration forgot (or added on its own) shows up as a diff.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, make_url

from rdev.adapters.db.engine import Database
from rdev.adapters.db.migrate import upgrade
from rdev.adapters.db.tables import metadata
from tests.fixtures.processes import run_rdev


def sync_url(db_url: str) -> str:
    """The same database for a synchronous engine (SQLite without the aiosqlite driver)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        url = url.set(drivername="sqlite")
    return url.render_as_string(hide_password=False)


def schema_diff(db_url: str) -> list[Any]:
    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": False}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


async def migrate_to_head(db_url: str) -> None:
    db = Database(db_url)
    try:
        await upgrade(db.engine)
    finally:
        await db.dispose()


async def test_every_migration_applied_to_an_empty_database_yields_the_declared_schema(
    db_url: str,
) -> None:
    # The database starts empty: everything the diff would want added is missing.
    before = schema_diff(db_url)
    assert {d[1].name for d in before if d[0] == "add_table"} == set(metadata.tables)

    await migrate_to_head(db_url)

    assert schema_diff(db_url) == []
    engine = create_engine(sync_url(db_url))
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == set(metadata.tables) | {"alembic_version"}


async def test_migrating_twice_changes_nothing(db_url: str) -> None:
    await migrate_to_head(db_url)
    await migrate_to_head(db_url)
    assert schema_diff(db_url) == []


def run_migrate(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_rdev("migrate", RDEV_DATA_DIR=str(data_dir))


def test_rdev_migrate_on_a_fresh_sqlite_data_dir_succeeds_and_is_idempotent(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"  # does not exist yet
    first = run_migrate(data_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "up to date" in first.stdout
    db_file = data_dir / "rdev.db"
    assert db_file.is_file()
    url = f"sqlite+aiosqlite:///{db_file}"
    assert schema_diff(url) == []

    second = run_migrate(data_dir)
    assert second.returncode == 0, second.stdout + second.stderr
    assert schema_diff(url) == []
