"""The build store, work queue and worker store over one backend: the in-memory fakes,
SQLite or PostgreSQL. Shared by the builds, queue and workers contract suites."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rdev.adapters.db.builds import SqlBuildStore
from rdev.adapters.db.engine import Database
from rdev.adapters.db.notify import WorkNotifier
from rdev.adapters.db.queue import SqlWorkQueue
from rdev.adapters.db.tables import projects
from rdev.adapters.db.workers import SqlWorkerStore
from rdev.domain.models import Build, BuildSpec
from rdev.ports.builds import BuildStore
from rdev.ports.queue import WorkQueue
from rdev.ports.workers import WorkerStore
from tests.contract.databases import IMPLEMENTATIONS, migrated_database
from tests.fakes.builds import BuildData, FakeBuildStore
from tests.fakes.notifier import FakeClaimNotifier
from tests.fakes.queue import FakeWorkQueue
from tests.fakes.workers import FakeWorkerStore


class World:
    """The three stores over one backend, plus what the ports do not offer: projects."""

    builds: BuildStore
    queue: WorkQueue
    workers: WorkerStore
    backend: str

    async def add_project(self, project_id: str, name: str, **fields: Any) -> None:
        raise NotImplementedError

    async def submit(
        self,
        project_id: str = "p1",
        *,
        prompt: str = "do it",
        agent: str = "command",
        labels: list[str] | None = None,
        max_attempts: int = 3,
        idempotency_key: str | None = None,
    ) -> Build:
        build, _ = await self.builds.submit(
            project_id=project_id,
            spec=BuildSpec(prompt=prompt, agent=agent, labels=labels or []),
            agent=agent,
            labels=labels or [],
            rendered_prompt=prompt,
            template_name=None,
            template_version=None,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            actor="test",
            project_name="proj-" + project_id,
        )
        return build


class FakeWorld(World):
    backend = "fake"

    def __init__(self) -> None:
        self.data = BuildData()
        notifier = FakeClaimNotifier()
        self.builds = FakeBuildStore(self.data, notifier)
        self.queue = FakeWorkQueue(self.data, notifier)
        self.workers = FakeWorkerStore()

    async def add_project(self, project_id: str, name: str, **fields: Any) -> None:
        self.data.add_project(project_id, name, **fields)


class SqlWorld(World):
    def __init__(self, db: Database, backend: str) -> None:
        self.db = db
        self.backend = backend
        notifier = WorkNotifier(db)
        self.builds = SqlBuildStore(db, notifier)
        self.queue = SqlWorkQueue(db, notifier)
        self.workers = SqlWorkerStore(db)

    async def add_project(self, project_id: str, name: str, **fields: Any) -> None:
        now = datetime.now(UTC)
        agent_settings = fields.pop("agent_settings", {})
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(projects).values(
                    id=project_id,
                    name=name,
                    repo_url=fields.pop("repo_url", "file:///repo"),
                    default_branch=fields.pop("default_branch", "main"),
                    labels=[],
                    settings={"agent": agent_settings} if agent_settings else {},
                    created_at=now,
                    updated_at=now,
                    **fields,
                )
            )


@pytest.fixture(params=IMPLEMENTATIONS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "fake":
        w: World = FakeWorld()
        await w.add_project("p1", "proj-p1")
        yield w
        return
    async with migrated_database(request.param, tmp_path) as db:
        w = SqlWorld(db, request.param)
        await w.add_project("p1", "proj-p1")
        yield w
