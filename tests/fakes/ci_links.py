"""An in-memory CILinkStore: the contract of ``adapters/db/ci_links.py`` without SQL.

Builds are added with :meth:`FakeCILinkStore.add_build` (a build row and its project's CI,
as the SQL store would find them by joining). Time comes from the injected clock, so a test
moves due times and leases by moving the clock. Events a finished link queues are kept in
``events`` when the build asked for them (its ``wanted`` events), like the outbox does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rdev.domain.ci_links import OPEN_LINK_STATES, CILinkState, CIProgress
from rdev.ports.ci import ProjectCI
from rdev.ports.ci_links import LinkCandidate, LinkOutcome, LinkWork


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeBuild:
    build_id: int
    task_id: str
    pushed: bool
    project_ci: ProjectCI | None
    #: The callback events the build asked for (the outbox queues only these).
    wanted: frozenset[str] = frozenset()
    ci: CIProgress | None = None


@dataclass
class FakeLink:
    build_id: int
    commit_sha: str
    state: CILinkState
    next_check_at: datetime
    deadline_at: datetime
    locked_until: datetime | None = None
    checks: int = 0


@dataclass
class FakeCILinkStore:
    clock: Callable[[], datetime] = _utc_now
    builds: dict[int, FakeBuild] = field(default_factory=dict)
    links: dict[int, FakeLink] = field(default_factory=dict)
    #: (build id, event) of every outbox row queued, in order.
    events: list[tuple[int, str]] = field(default_factory=list)

    # -- seeding (not on the port) ---------------------------------------------------------
    def add_build(
        self,
        task_id: str,
        *,
        pushed: bool = True,
        project_ci: ProjectCI | None = None,
        wanted: Iterable[str] = (),
    ) -> int:
        build_id = len(self.builds) + 1
        self.builds[build_id] = FakeBuild(build_id, task_id, pushed, project_ci, frozenset(wanted))
        return build_id

    def build_of(self, task_id: str) -> FakeBuild:
        [build] = [b for b in self.builds.values() if b.task_id == task_id]
        return build

    # -- the port --------------------------------------------------------------------------
    async def candidate(self, task_id: str) -> LinkCandidate | None:
        found = [b for b in self.builds.values() if b.task_id == task_id]
        if not found:
            return None
        b = found[0]
        provider = b.project_ci.provider if b.project_ci is not None else "none"
        return LinkCandidate(b.build_id, b.task_id, b.pushed, provider)

    async def start(
        self, build_id: int, commit_sha: str, *, ci: CIProgress, deadline_at: datetime
    ) -> bool:
        if build_id in self.links:
            return False
        self.links[build_id] = FakeLink(
            build_id, commit_sha, CILinkState.SEARCHING, self.clock(), deadline_at
        )
        self.builds[build_id].ci = ci
        return True

    async def claim_due(self, *, lease_seconds: float, limit: int = 20) -> list[LinkWork]:
        now = self.clock()
        lease = now + timedelta(seconds=lease_seconds)
        due = sorted(
            (
                link
                for link in self.links.values()
                if link.state in OPEN_LINK_STATES
                and link.next_check_at <= now
                and (link.locked_until is None or link.locked_until < now)
            ),
            key=lambda link: (link.next_check_at, link.build_id),
        )[: max(limit, 0)]
        out = []
        for link in due:
            link.locked_until = lease
            build = self.builds[link.build_id]
            out.append(
                LinkWork(
                    build_id=link.build_id,
                    task_id=build.task_id,
                    commit_sha=link.commit_sha,
                    state=link.state,
                    checks=link.checks,
                    deadline_at=link.deadline_at,
                    lease=lease,
                    ci=build.ci or CIProgress.searching("", link.commit_sha),
                    project_ci=build.project_ci,
                )
            )
        return out

    async def record(self, work: LinkWork, outcome: LinkOutcome) -> bool:
        link = self.links.get(work.build_id)
        if link is None or link.locked_until != work.lease:
            return False
        link.state = outcome.state
        link.next_check_at = outcome.next_check_at
        link.checks = outcome.checks
        link.locked_until = None
        build = self.builds[work.build_id]
        build.ci = outcome.ci
        if outcome.event and outcome.event in build.wanted:
            self.events.append((work.build_id, outcome.event))
        return True

    async def next_due(self) -> datetime | None:
        due = [link.next_check_at for link in self.links.values() if link.state.is_open]
        return min(due, default=None)
