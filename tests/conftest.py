"""Shared fixtures: a database on BOTH backends, a started container, an API client.

On PostgreSQL every test gets its own schema (search_path), so tests never see each
other's rows. PostgreSQL must be reachable; set RDEV_REQUIRE_POSTGRES=1 (CI does) to turn
a missing server into a failure instead of a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from rdev.api.app import create_app
from rdev.bootstrap import Container, build_container
from rdev.config import Settings

PG_DSN = os.environ.get("RDEV_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_TOKEN = "rdev_test_admin_token_0123456789"
BACKENDS = ["sqlite", "postgresql"]


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001
        return str(exc)


_PG_PROBLEM: str | None | bool = False


def pg_problem() -> str | None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _pg_available()
    return _PG_PROBLEM  # type: ignore[return-value]


def make_pg_schema() -> tuple[str, str]:
    """Create a fresh schema; returns (SQLAlchemy URL using it, schema name)."""
    problem = pg_problem()
    if problem:
        if os.environ.get("RDEV_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unavailable: {problem}")
        pytest.skip(f"PostgreSQL unavailable: {problem}")
    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}?options=-csearch_path%3D{schema}", schema


def drop_pg_schema(schema: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Any:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'rdev.db'}"
        return
    url, schema = make_pg_schema()
    yield url
    drop_pg_schema(schema)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        admin_token=ADMIN_TOKEN,
        embedded_worker=False,
        reaper_interval_seconds=0.2,
        claim_wait_seconds=5,
        webhook_allowlist=["127.0.0.0/8", "::1/128", "localhost"],
    )


@pytest.fixture
async def container(settings: Settings) -> AsyncIterator[Container]:
    c = build_container(settings)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(container.settings, container=container)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://rdev.test",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    ) as ac:
        yield ac


async def run_out_lease_clock(container: Container, task_id: str) -> None:
    """Set a leased task's expiry in the past, as a slow worker would find it: the reaper's
    next pass (called by hand: ``container.queue.reap_expired()``) takes it back."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from rdev.adapters.db.tables import work_tasks

    async with container.db.write() as conn:
        await conn.execute(
            update(work_tasks)
            .where(work_tasks.c.task_id == task_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )


async def make_token(
    container: Container, scopes: list[str], projects: list[str] | None = None
) -> dict[str, str]:
    _, token = await container.tokens.create("t-" + uuid.uuid4().hex[:6], scopes, projects)
    return {"Authorization": f"Bearer {token}"}
