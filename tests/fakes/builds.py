"""An in-memory BuildStore, and the build rows it shares with the fake work queue.

:class:`BuildData` is the fake's database: builds, their work tasks, audit events and
logs, and the projects claims read. :class:`FakeBuildStore` and
:class:`tests.fakes.queue.FakeWorkQueue` are two views of one ``BuildData``, as the SQL
stores are of one database. Projects are added with :meth:`BuildData.add_project` (the
project store's job on the SQL side).
"""

from __future__ import annotations

import builtins
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rdev.domain.errors import Conflict, NotFound
from rdev.domain.models import Build, BuildEvent, BuildSpec, BuildStatus
from rdev.domain.state_machine import check_transition
from rdev.ports.builds import LogChunk

from .notifier import FakeClaimNotifier


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ProjectRow:
    id: str
    name: str
    repo_url: str = "file:///repo"
    default_branch: str = "main"
    agent_settings: dict[str, Any] = field(default_factory=dict)
    repo_host: str | None = None
    git_credential: str | None = None


@dataclass
class TaskRow:
    """A work task: queued (claimable from ``available_at``) or leased."""

    agent: str
    labels: frozenset[str]
    available_at: datetime
    state: str = "queued"
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None


@dataclass
class BuildRow:
    id: int
    build: Build
    retries: int = 0
    idempotency_key: str | None = None
    events: list[BuildEvent] = field(default_factory=list)
    logs: list[LogChunk] = field(default_factory=list)
    task: TaskRow | None = None


@dataclass
class BuildData:
    clock: Callable[[], datetime] = _utc_now
    projects: dict[str, ProjectRow] = field(default_factory=dict)
    rows: dict[str, BuildRow] = field(default_factory=dict)  # by task id, in id order
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_project(self, project_id: str, name: str, **fields: Any) -> ProjectRow:
        self.projects[project_id] = ProjectRow(project_id, name, **fields)
        return self.projects[project_id]

    def row(self, task_id: str) -> BuildRow:
        r = self.rows.get(task_id)
        if r is None:
            raise NotFound(f"no build {task_id!r}")
        return r

    def move(
        self,
        r: BuildRow,
        to: BuildStatus,
        *,
        actor: str,
        reason: str | None,
        at: datetime | None = None,
        **changes: Any,
    ) -> None:
        """A state change under the state machine, with its audit event."""
        src = r.build.status
        check_transition(src, to)
        at = at or self.clock()
        if to.is_final:
            changes.setdefault("finished_at", at)
        r.build = r.build.model_copy(update={"status": to, **changes})
        r.events.append(
            BuildEvent(
                seq=len(r.events) + 1,
                task_id=r.build.task_id,
                from_status=src,
                to_status=to,
                at=at,
                actor=actor,
                reason=reason,
            )
        )


class FakeBuildStore:
    def __init__(self, data: BuildData, notifier: FakeClaimNotifier | None = None) -> None:
        self.data = data
        self.notifier = notifier or FakeClaimNotifier()

    async def submit(
        self,
        *,
        project_id: str,
        spec: BuildSpec,
        agent: str,
        labels: builtins.list[str],
        rendered_prompt: str,
        template_name: str | None,
        template_version: str | None,
        max_attempts: int,
        idempotency_key: str | None,
        actor: str,
        project_name: str | None = None,
    ) -> tuple[Build, bool]:
        project = self.data.projects.get(project_id)
        if project is None:  # the foreign key
            raise Conflict(f"no project {project_id!r}")
        if idempotency_key:
            existing = await self.by_idempotency_key(project_id, idempotency_key)
            if existing:
                return existing, False
        now = self.data.clock()
        build = Build(
            task_id=uuid.uuid4().hex,
            project_id=project_id,
            project_name=project_name or "",
            status=BuildStatus.PENDING,
            spec=spec,
            max_attempts=max_attempts,
            rendered_prompt=rendered_prompt,
            template_version=template_version,
            agent_info={"agent": agent},
            created_at=now,
        )
        r = BuildRow(
            id=next(self.data._ids),
            build=build,
            idempotency_key=idempotency_key,
            task=TaskRow(agent=agent, labels=frozenset(labels), available_at=now),
        )
        r.events.append(
            BuildEvent(
                seq=1,
                task_id=build.task_id,
                from_status=None,
                to_status=BuildStatus.PENDING,
                at=now,
                actor=actor,
                reason="submitted",
            )
        )
        self.data.rows[build.task_id] = r
        self.notifier.wake_for(agent, sorted(set(labels)))
        return build.model_copy(deep=True), True

    def _read(self, r: BuildRow) -> Build:
        """A build as read back: with its project's current name."""
        return r.build.model_copy(
            update={"project_name": self.data.projects[r.build.project_id].name}, deep=True
        )

    async def by_idempotency_key(self, project_id: str, key: str) -> Build | None:
        for r in self.data.rows.values():
            if r.build.project_id == project_id and r.idempotency_key == key:
                return self._read(r)
        return None

    async def get(self, task_id: str) -> Build:
        return self._read(self.data.row(task_id))

    async def pending_agent(self, task_id: str) -> str | None:
        r = self.data.rows.get(task_id)
        return r.task.agent if r and r.task and r.task.state == "queued" else None

    async def list(
        self,
        *,
        project_id: str | None,
        statuses: builtins.list[str] | None,
        limit: int,
        cursor: int | None,
        project_ids: builtins.list[str] | None = None,
    ) -> tuple[builtins.list[Build], int | None]:
        rows = [
            r
            for r in sorted(self.data.rows.values(), key=lambda r: -r.id)
            if (not project_id or r.build.project_id == project_id)
            and (project_ids is None or r.build.project_id in project_ids)
            and (not statuses or r.build.status.value in statuses)
            and (cursor is None or r.id < cursor)
        ][: limit + 1]
        next_cursor = rows[limit - 1].id if len(rows) > limit else None
        return [self._read(r) for r in rows[:limit]], next_cursor

    async def events(self, task_id: str) -> builtins.list[BuildEvent]:
        r = self.data.rows.get(task_id)
        return [e.model_copy() for e in r.events] if r else []

    async def logs(
        self, task_id: str, since: int = 0, limit: int = 5000
    ) -> builtins.list[LogChunk]:
        r = self.data.rows.get(task_id)
        if r is None:
            return []
        return [LogChunk(**c) for c in r.logs if c["seq"] > since][:limit]

    async def cancel(self, task_id: str, actor: str) -> Build:
        r = self.data.row(task_id)
        if r.build.status == BuildStatus.PENDING:
            self.data.move(r, BuildStatus.CANCELLED, actor=actor, reason="cancelled")
            r.task = None
        elif r.build.status == BuildStatus.RUNNING:
            r.build = r.build.model_copy(update={"cancel_requested": True})
        else:
            check_transition(r.build.status, BuildStatus.CANCELLED)  # refused, clearly
        return self._read(r)
