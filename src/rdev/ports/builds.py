"""The build store port: submit, reads, logs and cancel as the build service uses them."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Protocol, TypedDict

from rdev.domain.models import Build, BuildEvent, BuildSpec


class LogChunk(TypedDict):
    """One stored log chunk, as the API shows it (a TypedDict: the JSON shape is the row)."""

    seq: int
    attempt: int
    stream: str
    text: str
    at: datetime


class BuildStore(Protocol):
    """Builds, their audit trail and their logs."""

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
        """Store a pending build and queue it: (build, created). An ``idempotency_key``
        already used in this project returns the first build and stores nothing."""
        ...

    async def by_idempotency_key(self, project_id: str, key: str) -> Build | None: ...

    async def get(self, task_id: str) -> Build:
        """The build; NotFound if there is none."""
        ...

    async def pending_agent(self, task_id: str) -> str | None:
        """The agent a queued build waits for; None once it is claimed or ended."""
        ...

    async def list(
        self,
        *,
        project_id: str | None,
        statuses: builtins.list[str] | None,
        limit: int,
        cursor: int | None,
        project_ids: builtins.list[str] | None = None,
    ) -> tuple[builtins.list[Build], int | None]:
        """Newest first, ``limit`` per page; (page, cursor of the next page or None)."""
        ...

    async def events(self, task_id: str) -> builtins.list[BuildEvent]:
        """The build's status changes, oldest first (empty for an unknown build)."""
        ...

    async def logs(
        self, task_id: str, since: int = 0, limit: int = 5000
    ) -> builtins.list[LogChunk]:
        """Chunks with a sequence number above ``since``, in order, ``limit`` at most."""
        ...

    async def cancel(self, task_id: str, actor: str) -> Build:
        """A pending build ends cancelled; a running one gets a cancel request (its worker
        ends it). A final build: IllegalTransition. Unknown: NotFound."""
        ...
