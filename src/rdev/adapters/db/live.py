"""Wake-ups for live build streams (SSE): in-process, and across replicas via LISTEN.

The log append path already sends ``pg_notify(<channel>_log)`` on PostgreSQL. One shared
listener per process turns those into a broadcast signal; in-process writes (log appends,
claims, completions, cancels seen by this replica) call :meth:`LiveSignal.wake` directly.
Streams also re-check on a short timer, so a status change made on another replica
(which sends no notification) is seen within ``poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from .engine import Database

log = structlog.get_logger(__name__)


class LiveSignal:
    """A broadcast 'a build log or status may have changed' signal.

    A stream takes ``snapshot()`` BEFORE reading the database, then waits on it, so a
    wake-up between the read and the wait is never missed. The LISTEN connection is
    opened lazily, by the first stream, and closed by :meth:`stop`.
    """

    def __init__(
        self,
        db: Database,
        *,
        tasks: list[asyncio.Task[Any]] | None = None,
        stop: asyncio.Event | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        """``tasks``: where to put the listener task (the container's background list, which
        it cancels on stop); ``stop``: once set, no listener is started any more."""
        self._db = db
        self._tasks = tasks
        self._stop = stop
        self.poll_seconds = poll_seconds
        self._event = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
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
        channel = self._db.dialect.notify_channel
        if channel is None or self._listener is not None or self._stopping:
            return
        if self._stop is not None and self._stop.is_set():
            return
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(channel + "_log"), name="rdev-live-listen"
        )
        if self._tasks is not None:
            self._tasks.append(self._listener)

    async def stop(self) -> None:
        self._stopping = True
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        self.wake()

    async def _listen(self, channel: str) -> None:
        """One dedicated autocommit connection with LISTEN; reconnect on failure."""
        import psycopg

        delay = 0.5
        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._db.psycopg_conninfo(), autocommit=True
                )
                async with conn:
                    await conn.execute(f'LISTEN "{channel}"')
                    self.wake()  # anything appended while we were away
                    delay = 0.5
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening whatever happened
                log.warning("live log listen connection lost", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
