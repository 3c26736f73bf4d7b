"""The work queue port: claim under a lease, heartbeat, log append, complete, reap.

The worker protocol's storage as the services see it. A lease token is the claimer's
proof of ownership: every write on a leased task (heartbeat, log append, completion)
names it, and a token that no longer matches is answered with ``StaleLease``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NotRequired, Protocol, TypedDict

from rdev.domain.errors import NotFound, StaleLease
from rdev.domain.models import BuildResult, BuildStatus, ClaimedTask


@dataclass
class Completion:
    """One result for :meth:`complete_many`: the task, the lease it ran under, the result."""

    task_id: str
    lease_token: str
    result: BuildResult
    agent_info: dict[str, Any] | None = None


class LogLine(TypedDict):
    """One chunk a worker sends: its text and its stream (``out`` unless said)."""

    text: str
    stream: NotRequired[str]


class QueueStats(TypedDict):
    """Queue figures for the metrics scrape: queued builds, and the oldest one's time."""

    depth: int
    oldest_available_at: datetime | None


#: A batch completion's answer per item: the new status, or why that item was refused.
Outcome = BuildStatus | StaleLease | NotFound


class WorkQueue(Protocol):
    """The queue of claimable builds and the leases on claimed ones."""

    async def claim(
        self,
        *,
        worker_id: str,
        worker_name: str,
        agents: list[str],
        labels: list[str],
        max_tasks: int,
        lease_seconds: float,
    ) -> list[ClaimedTask]:
        """Lease up to ``max_tasks`` queued builds for an agent offered whose labels are a
        subset of ``labels``, oldest first; each build becomes ``running``."""
        ...

    async def heartbeat(
        self, *, worker_id: str, tasks: dict[str, str], lease_seconds: float
    ) -> tuple[dict[str, datetime], list[str]]:
        """Extend the leases of ``tasks`` (task id -> lease token): (new expiry per task,
        task ids with a cancel request). Any stale lease raises StaleLease (the lost task
        ids in ``extra["lost_tasks"]``) and extends nothing."""
        ...

    async def append_logs(
        self,
        *,
        task_id: str,
        lease_token: str,
        chunks: list[LogLine],
        offset: int | None = None,
    ) -> int:
        """Store ``chunks`` after the last stored one; returns the last sequence number.
        ``offset`` (the first chunk's index in this attempt's stream) makes a re-sent
        batch store only the chunks not stored yet."""
        ...

    async def complete(
        self,
        *,
        task_id: str,
        lease_token: str,
        result: BuildResult,
        agent_info: dict[str, Any] | None,
        worker_name: str,
        retry_delay_seconds: float,
        max_retryable_failures: int,
    ) -> BuildStatus:
        """Store one result: the build's new status (``pending`` again for a retryable
        failure with retries left). Raises StaleLease or NotFound."""
        ...

    async def complete_many(
        self,
        items: list[Completion],
        *,
        worker_name: str,
        retry_delay_seconds: float,
        max_retryable_failures: int,
    ) -> list[Outcome]:
        """Store many results in one transaction; one outcome per item, in order (a task
        answered twice in one batch: the first wins, the second is stale)."""
        ...

    async def reap_expired(self, limit: int = 100) -> int:
        """Take back expired leases: requeue their builds, or end them (cancel requested,
        or attempts used up). Returns how many leases were taken back."""
        ...

    async def release_worker(self, worker_id: str) -> int:
        """Take back every lease ``worker_id`` holds, by the reaper's rule, without waiting
        for them to expire (the worker's process is known to be gone). Returns how many."""
        ...

    async def queue_stats(self) -> QueueStats: ...
