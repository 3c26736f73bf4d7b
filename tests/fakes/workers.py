"""An in-memory WorkerStore: the contract of ``adapters/db/workers.py`` without SQL."""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rdev.domain.errors import NotFound
from rdev.domain.models import WorkerInfo
from rdev.ports.workers import WorkerRecord


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeWorkerStore:
    clock: Callable[[], datetime] = _utc_now
    _rows: dict[str, WorkerInfo] = field(default_factory=dict)
    _stopped: dict[str, datetime | None] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

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
        now = self.clock()
        existing = next((w for w in self._rows.values() if w.name == name), None)
        wid = existing.id if existing else f"w{next(self._ids):08d}"
        self._rows[wid] = WorkerInfo(
            id=wid,
            name=name,
            hostname=hostname,
            labels=list(labels),
            agents=list(agents),
            agent_notes=dict(agent_notes),
            slots=slots,
            version=version,
            last_heartbeat_at=now,
            registered_at=existing.registered_at if existing else now,
            current_tasks=existing.current_tasks if existing else [],
        )
        self._stopped[wid] = None
        return wid

    async def get(self, worker_id: str) -> WorkerRecord:
        w = self._rows.get(worker_id)
        if w is None:
            raise NotFound(f"no worker {worker_id!r}")
        return WorkerRecord(
            id=w.id, name=w.name, agents=list(w.agents), labels=list(w.labels), slots=w.slots
        )

    async def touch(self, worker_id: str, current_tasks: builtins.list[str]) -> None:
        w = self._rows.get(worker_id)
        if w is not None:
            w.last_heartbeat_at = self.clock()
            w.current_tasks = list(current_tasks)
            self._stopped[worker_id] = None

    async def mark_stopped(self, worker_id: str) -> None:
        w = self._rows.get(worker_id)
        if w is not None:
            self._stopped[worker_id] = self.clock()
            w.current_tasks = []

    async def list(self, offline_after_seconds: float) -> builtins.list[WorkerInfo]:
        cutoff = self.clock() - timedelta(seconds=offline_after_seconds)
        return [
            w.model_copy(
                update={
                    "online": bool(
                        w.last_heartbeat_at
                        and w.last_heartbeat_at >= cutoff
                        and self._stopped.get(w.id) is None
                    )
                },
                deep=True,
            )
            for w in sorted(self._rows.values(), key=lambda w: w.name)
        ]
