"""The dialect seam: what differs between SQLite and PostgreSQL, behind one interface.

In the style of Prefect's server query components: each backend has one module holding
its SQL for the hot paths of the worker protocol (claim, finish, submit) and its
wake-up plumbing (NOTIFY on write, one LISTEN connection per replica). The stores hold
the portable rules and call the dialect chosen once by :func:`dialect_for`; they never
ask which backend they run on. SQL both backends share lives in :mod:`.portable`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from rdev.domain.models import BuildResult, BuildStatus, ClaimedTask

if TYPE_CHECKING:
    from rdev.adapters.db.engine import Database

#: Work task states (``work_tasks.state``): waiting to be claimed, or leased to a worker.
QUEUED = "queued"
LEASED = "leased"

#: A notification topic: ``work`` (a build may be claimable), ``log`` (a log or status
#: may have changed; for live streams).
Topic = Literal["work", "log"]


@dataclass(frozen=True)
class ClaimRequest:
    """One claim: who claims, what it can run, how many, for how long."""

    worker_id: str
    worker_name: str
    agents: list[str]
    labels: list[str]
    max_tasks: int
    lease_seconds: float
    now: datetime

    @property
    def actor(self) -> str:
        return f"worker:{self.worker_name}"


@dataclass(frozen=True)
class ClaimBatch:
    """A claim's answer: the leased tasks; ``full`` when there may be more to take; the
    (build id, spec) of claimed builds with a callback URL (for ``build.started``)."""

    tasks: list[ClaimedTask]
    full: bool
    callbacks: list[tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class FinalWrite:
    """A final result to store under the lease that ran it."""

    task_id: str
    lease_token: str
    status: BuildStatus
    result: BuildResult
    agent_info: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Finished:
    """A build :meth:`Dialect.finish` ended: whether it has a callback URL, and whether
    its (merged) agent info says it pushed."""

    build_id: int
    has_callback: bool
    pushed: bool


@dataclass(frozen=True)
class NewBuild:
    """The rows of a submit: the build, its work task and its first audit event (columns
    as in :mod:`rdev.adapters.db.tables`, without the build id they share)."""

    build: dict[str, Any]
    task: dict[str, Any]
    event: dict[str, Any]
    #: The wake-up payload for other replicas' claimers (agent and labels).
    wake: str


class Listener(Protocol):
    """The replica's one listening connection (PostgreSQL), or nothing (SQLite)."""

    def subscribe(
        self, topic: Topic, on_note: Callable[[str], None], on_connect: Callable[[], None]
    ) -> None:
        """Call ``on_note(payload)`` per notification on ``topic``; ``on_connect()`` after
        each (re)connect (anything may have been missed while away)."""
        ...

    async def start(self) -> None:
        """Connect (once; later calls return at once); returns after the first attempt."""
        ...

    def start_soon(self) -> None:
        """Start connecting in the background, if not started or stopped yet."""
        ...

    async def stop(self) -> None: ...


class Dialect(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def notify_channel(self) -> str | None:
        """The NOTIFY channel of this database (and schema); None without NOTIFY."""
        ...

    @property
    def listener(self) -> Listener: ...

    def write_guard(self) -> AbstractAsyncContextManager[Any]:
        """Held around every write transaction (SQLite: one writer at a time)."""
        ...

    def lock_for_claim(self, stmt: Select[Any]) -> Select[Any]:
        """Lock the selected queue rows for a claim, skipping rows others hold."""
        ...

    def lock_row(self, stmt: Select[Any], of: Any = None) -> Select[Any]:
        """Lock the selected rows (``of``: only those tables' rows) until commit."""
        ...

    async def claim(self, conn: AsyncConnection, req: ClaimRequest) -> ClaimBatch:
        """Lease, start and audit up to ``req.max_tasks`` claimable builds."""
        ...

    async def finish(
        self, conn: AsyncConnection, items: list[FinalWrite], *, now: datetime, actor: str
    ) -> dict[str, Finished]:
        """End ``running`` builds whose work task is still leased under the item's token:
        store status, result and merged agent info, delete the work task, audit. Returns
        the ended ones by task id (items missing from it hold no lease any more)."""
        ...

    async def submit(self, db: Database, new: NewBuild) -> None:
        """Store a build, its work task and its first event atomically; announce it."""
        ...

    async def notify_work(self, conn: AsyncConnection) -> None:
        """Tell other replicas' claimers that work may be claimable (at commit)."""
        ...

    async def notify_logs(self, conn: AsyncConnection) -> None:
        """Tell other replicas' live streams that a log changed (at commit)."""
        ...


def dialect_for(url: URL) -> Dialect:
    """The one place that picks the backend."""
    if url.get_backend_name() == "sqlite":
        from .sqlite import SqliteDialect

        return SqliteDialect()
    from .postgres import PostgresDialect

    return PostgresDialect(url)
