"""The worker registry port: register, look up, heartbeat, stop, list."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Protocol

from rdev.domain.models import WorkerInfo


@dataclass(frozen=True)
class WorkerRecord:
    """What the worker protocol needs to know of a registered worker, per request."""

    id: str
    name: str
    agents: builtins.list[str]
    labels: builtins.list[str]
    slots: int


class WorkerStore(Protocol):
    async def register(
        self,
        *,
        name: str,
        hostname: str | None,
        labels: builtins.list[str],
        agents: builtins.list[str],
        agent_notes: dict[str, str],
        slots: int,
        version: str | None,
    ) -> str:
        """Idempotent by name: re-registering updates the worker and keeps its id."""
        ...

    async def get(self, worker_id: str) -> WorkerRecord:
        """NotFound if no worker has this id."""
        ...

    async def touch(self, worker_id: str, current_tasks: builtins.list[str]) -> None:
        """A heartbeat: the worker is alive (and not stopped), running ``current_tasks``."""
        ...

    async def mark_stopped(self, worker_id: str) -> None: ...

    async def list(self, offline_after_seconds: float) -> builtins.list[WorkerInfo]:
        """Every worker by name; online if heard from within ``offline_after_seconds``
        and not stopped."""
        ...
