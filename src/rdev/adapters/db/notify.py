"""Wake-ups for long-polling claimers: in-process, and across replicas via LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

import structlog
from sqlalchemy import func, select

from rdev.domain.errors import DatabaseUnavailable
from rdev.ports.notifier import Waiter as WaiterPort

from .dialects import QUEUED
from .engine import Database
from .stamps import utcnow
from .tables import work_tasks

log = structlog.get_logger(__name__)

#: How often waiting claimers are checked against the queue (see :class:`WorkNotifier`).
RECHECK_SECONDS = 2.0


class Waiter:
    """One long-polling claimer: what it can take, and the event that wakes it."""

    __slots__ = ("agents", "event", "labels")

    def __init__(self, agents: Iterable[str], labels: Iterable[str]) -> None:
        self.agents = frozenset(agents)
        self.labels = frozenset(labels)
        self.event = asyncio.Event()

    def can_take(self, agent: str, labels: frozenset[str]) -> bool:
        return agent in self.agents and labels <= self.labels


class WorkNotifier:
    """Wakes long-polling claimers when something may be claimable.

    A claimer registers a :class:`Waiter` BEFORE it looks for work and waits on it after,
    so a wake-up that happens between the look and the wait is never missed. A queued
    build wakes ONE waiter, the longest waiting one that offers its agent and has its
    labels: with hundreds of idle workers, a submit costs one claim query, not hundreds.
    A claim that filled its batch (there may be more) wakes one waiter offering one of its
    agents, which passes it on the same way: a backlog is handed out at claim speed.
    Anything else (leases reclaimed, a lost LISTEN connection, shutdown) wakes every
    waiter.

    While claimers wait, one query every :data:`RECHECK_SECONDS` looks for claimable builds
    nobody was woken for (a retry whose delay ran out, a row skipped while another claimer
    held it, a waiter whose claim failed) and wakes one waiter per such build: one query
    per process, however many workers wait.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiters: dict[Waiter, None] = {}  # insertion order: longest waiting first
        self._rechecker: asyncio.Task[None] | None = None
        self._stopping = False
        # Other replicas' submits and requeues arrive here; after a reconnect anything
        # may have been missed, so every waiter looks.
        db.dialect.listener.subscribe("work", self._on_notify, self.wake)

    def waiter(self, agents: Iterable[str], labels: Iterable[str]) -> Waiter:
        w = Waiter(agents, labels)
        self._waiters[w] = None
        return w

    def forget(self, waiter: WaiterPort) -> None:
        if isinstance(waiter, Waiter):  # only this notifier's waiters are registered here
            self._waiters.pop(waiter, None)

    def wake(self) -> None:
        """Wake every waiter."""
        waiters, self._waiters = self._waiters, {}
        for w in waiters:
            w.event.set()

    def wake_like(self, agents: Iterable[str]) -> None:
        """Wake the longest waiting waiter that offers one of ``agents``."""
        offered = frozenset(agents)
        self._wake_first(lambda w: bool(w.agents & offered), 1)

    def wake_for(self, agent: str, labels: Iterable[str], count: int = 1) -> None:
        """``count`` builds for ``agent`` with ``labels`` are claimable: wake that many
        waiters that can take one (one each, the longest waiting first).

        A woken waiter that loses the build to another claimer has lost nothing (the build
        was taken); if its claim fails, the periodic re-check finds the build again.
        """
        need = frozenset(labels)
        self._wake_first(lambda w: w.can_take(agent, need), count)

    def _wake_first(self, fits: Callable[[Waiter], bool], count: int) -> None:
        """Wake (and unregister) the ``count`` longest waiting waiters that ``fits``."""
        for w in [w for w in self._waiters if fits(w)][:count]:
            del self._waiters[w]
            w.event.set()

    async def start(self) -> None:
        """Start the periodic re-check, and the replica's listening connection (returns
        once it listens, or after its first failed attempt)."""
        if self._rechecker is None:
            self._rechecker = asyncio.create_task(self._recheck(), name="rdev-claim-recheck")
        await self._db.dialect.listener.start()

    async def stop(self) -> None:
        """Stop the re-check (the listening connection closes with the database)."""
        self._stopping = True
        if self._rechecker:
            self._rechecker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._rechecker
        self._rechecker = None

    async def _recheck(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RECHECK_SECONDS)
            if not self._waiters:
                continue
            try:
                kinds = await self._claimable_kinds()
            except Exception as exc:  # noqa: BLE001 - cannot tell: let every waiter look
                if not isinstance(exc, DatabaseUnavailable):  # an outage is logged once
                    log.warning("claim re-check failed", error=str(exc))
                self.wake()
                continue
            for agent, labels_key, count in kinds:
                self.wake_for(agent, labels_key.split(",") if labels_key else [], count)

    async def _claimable_kinds(self) -> list[tuple[str, str, int]]:
        """(agent, labels, how many) of builds claimable now, looking at 1,000 at most."""
        head = (
            select(work_tasks.c.agent, work_tasks.c.labels_key)
            .where(work_tasks.c.state == QUEUED, work_tasks.c.available_at <= utcnow())
            .limit(1000)
            .subquery()
        )
        stmt = select(head.c.agent, head.c.labels_key, func.count()).group_by(
            head.c.agent, head.c.labels_key
        )
        async with self._db.read() as conn:
            return [(r[0], r[1], r[2]) for r in await conn.execute(stmt)]

    def _on_notify(self, payload: str) -> None:
        """A submit's NOTIFY names the build's agent and labels (see :func:`wake_payload`)."""
        agent, sep, labels = payload.partition("\n")
        if sep:
            self.wake_for(agent, labels.split(",") if labels else [])
        else:
            self.wake()


def wake_payload(agent: str, labels_key: str) -> str:
    """The NOTIFY payload for a queued build: its agent and its comma-joined labels."""
    return f"{agent}\n{labels_key}"
