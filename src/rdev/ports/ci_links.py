"""The CI link store port: which pushed builds still wait for their CI pipeline.

One link per build whose pushed commit is followed in CI. Every linker (one per server
replica) leases due links so two never check the same build at once; a linker that lost its
lease (slower than the lease) writes nothing. Implementations: ``adapters/db/ci_links.py``
(SQLite, PostgreSQL) and ``tests/fakes/ci_links.py`` (in memory), held to the same contract
by ``tests/contract/test_ci_links_store.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from rdev.domain.ci_links import CILinkState, CIProgress
from rdev.ports.ci import ProjectCI


@dataclass(frozen=True)
class LinkCandidate:
    """A finished build as the completion hook sees it: whether to follow it in CI."""

    build_id: int
    task_id: str
    #: The worker reported that it pushed the commit.
    pushed: bool
    #: The project's CI provider name, ``none`` without CI.
    ci_provider: str


@dataclass(frozen=True)
class LinkWork:
    """One leased link: its state, the build's current ``ci`` and the project's CI."""

    build_id: int
    task_id: str
    commit_sha: str
    state: CILinkState
    checks: int
    deadline_at: datetime
    #: The lease's expiry, which is also the claim's token for :meth:`CILinkStore.record`.
    lease: datetime
    ci: CIProgress
    #: None when CI was removed from the project since the link started.
    project_ci: ProjectCI | None


@dataclass(frozen=True)
class LinkOutcome:
    """What one check decided: the link's next state and the build's new ``ci``."""

    state: CILinkState
    ci: CIProgress
    next_check_at: datetime
    checks: int
    #: ``build.ci_passed`` / ``build.ci_failed`` at the end (queued with the outcome).
    event: str | None = None


class CILinkStore(Protocol):
    async def candidate(self, task_id: str) -> LinkCandidate | None:
        """The build with this task id, or None if there is none."""
        ...

    async def start(
        self, build_id: int, commit_sha: str, *, ci: CIProgress, deadline_at: datetime
    ) -> bool:
        """Insert a ``searching`` link, first check due now, and set the build's ``ci``.
        False (nothing written) when the build is linked already."""
        ...

    async def claim_due(self, *, lease_seconds: float, limit: int = 20) -> list[LinkWork]:
        """Lease up to ``limit`` open links whose check is due and which nobody holds,
        earliest due first."""
        ...

    async def record(self, work: LinkWork, outcome: LinkOutcome) -> bool:
        """Store one check's outcome (link, build ``ci``, the event's outbox row) at once and
        release the lease. False (nothing written) when the lease was lost."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest open link is due (leased or not); None without open links."""
        ...
