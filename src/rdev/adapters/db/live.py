"""Wake-ups for live build streams (SSE): in-process, and across replicas via LISTEN.

The log append path sends a ``log`` notification (on PostgreSQL). The replica's one
listening connection (the dialect's listener, shared with the claim notifier) turns
those into a broadcast signal; in-process writes (log appends, claims, completions,
cancels seen by this replica) call :meth:`LiveSignal.wake` directly. Streams also
re-check on a short timer, so a status change made on another replica (which sends no
notification) is seen within ``poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib

from .engine import Database


class LiveSignal:
    """A broadcast 'a build log or status may have changed' signal.

    A stream takes ``snapshot()`` BEFORE reading the database, then waits on it, so a
    wake-up between the read and the wait is never missed. The first stream subscribes
    to log notifications (a replica nobody watches is not sent every log append); the
    listening connection closes with the database.
    """

    def __init__(
        self, db: Database, *, stop: asyncio.Event | None = None, poll_seconds: float = 1.0
    ) -> None:
        """``stop``: once set, no subscription is made any more (the server is stopping)."""
        self._db = db
        self._stop = stop
        self.poll_seconds = poll_seconds
        self._event = asyncio.Event()
        self._subscribed = False
        self._stopping = False

    def snapshot(self) -> asyncio.Event:
        self._ensure_listening()
        return self._event

    def wake(self) -> None:
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    async def wait(self, ev: asyncio.Event) -> None:
        """Wait for ``ev`` (from :meth:`snapshot`) or the poll interval, whichever is first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), self.poll_seconds)

    def _ensure_listening(self) -> None:
        if self._subscribed or self._stopping or (self._stop is not None and self._stop.is_set()):
            return
        self._subscribed = True
        listener = self._db.dialect.listener
        # Any notification, and every (re)connect (appends may have been missed), wakes.
        listener.subscribe("log", lambda _payload: self.wake(), self.wake)
        listener.start_soon()

    async def stop(self) -> None:
        """Wake every stream (they see the server stopping); subscribe no more."""
        self._stopping = True
        self.wake()
