"""In-memory wake-up ports: a claim notifier and a live-stream signal, without LISTEN.

The claim notifier keeps the real one's rules (a queued build wakes the longest waiting
waiter that can take it; ``wake`` wakes all) and counts what it was asked, so a test can
see that a store announced its work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from rdev.ports.notifier import Waiter


@dataclass(eq=False)
class FakeWaiter:
    agents: frozenset[str]
    labels: frozenset[str]
    event: asyncio.Event = field(default_factory=asyncio.Event)


class FakeClaimNotifier:
    def __init__(self) -> None:
        self._waiters: list[FakeWaiter] = []
        #: (agent, labels) per queued build announced, in order.
        self.announced: list[tuple[str, tuple[str, ...]]] = []
        self.wake_alls = 0

    def waiter(self, agents: Iterable[str], labels: Iterable[str]) -> FakeWaiter:
        w = FakeWaiter(frozenset(agents), frozenset(labels))
        self._waiters.append(w)
        return w

    def forget(self, waiter: Waiter) -> None:
        if isinstance(waiter, FakeWaiter) and waiter in self._waiters:
            self._waiters.remove(waiter)

    def wake(self) -> None:
        self.wake_alls += 1
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.event.set()

    def wake_like(self, agents: Iterable[str]) -> None:
        offered = frozenset(agents)
        self._wake_first(lambda w: bool(w.agents & offered))

    def wake_for(self, agent: str, labels: Iterable[str], count: int = 1) -> None:
        need = frozenset(labels)
        self.announced.append((agent, tuple(sorted(need))))
        for _ in range(count):
            self._wake_first(lambda w: agent in w.agents and need <= w.labels)

    def _wake_first(self, fits: object) -> None:
        for w in self._waiters:
            if fits(w):  # type: ignore[operator]
                self._waiters.remove(w)
                w.event.set()
                return


class FakeLiveNotifier:
    """The live-stream signal: ``wake`` sets the event the last ``snapshot`` returned."""

    def __init__(self, poll_seconds: float = 1.0) -> None:
        self.poll_seconds = poll_seconds
        self._event = asyncio.Event()

    def snapshot(self) -> asyncio.Event:
        return self._event

    def wake(self) -> None:
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    async def wait(self, ev: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), self.poll_seconds)
