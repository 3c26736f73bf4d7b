"""Wake-up ports: long-polling claimers waiting for work, live streams waiting for logs.

Both follow the same rule: take the waitable BEFORE reading the database, wait on it
after, so a wake-up between the read and the wait is never missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol


class Waiter(Protocol):
    """One registered claimer; ``event`` is set when work it can take may be queued."""

    @property
    def event(self) -> asyncio.Event: ...


class ClaimNotifier(Protocol):
    """Wakes long-polling claimers (the work notifier)."""

    def waiter(self, agents: Iterable[str], labels: Iterable[str]) -> Waiter:
        """Register a claimer offering ``agents`` with ``labels``, before it looks."""
        ...

    def forget(self, waiter: Waiter) -> None: ...

    def wake(self) -> None:
        """Wake every waiter (leases reclaimed, shutdown, ...)."""
        ...


class LiveNotifier(Protocol):
    """A broadcast 'a build's log or status may have changed' signal for live streams."""

    def snapshot(self) -> asyncio.Event:
        """The event the next :meth:`wake` sets; take it before reading."""
        ...

    def wake(self) -> None: ...

    async def wait(self, ev: asyncio.Event) -> None:
        """Wait for ``ev`` or the poll interval, whichever comes first."""
        ...
