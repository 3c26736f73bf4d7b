"""Wake-ups for long-polling claimers: in-process, and across replicas via LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from .engine import Database

log = structlog.get_logger(__name__)


class WorkNotifier:
    """A broadcast 'something may be claimable' signal.

    A waiter takes ``snapshot()`` BEFORE looking for work and then waits on it, so a
    wake-up that happens between the look and the wait is never missed.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._event = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False

    def snapshot(self) -> asyncio.Event:
        return self._event

    def wake(self) -> None:
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    async def start(self) -> None:
        if self._db.is_postgres and self._listener is None:
            ready = asyncio.Event()
            self._listener = asyncio.create_task(self._listen(ready), name="rdev-listen")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 10)

    async def stop(self) -> None:
        self._stopping = True
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None

    async def _listen(self, ready: asyncio.Event) -> None:
        """Hold one dedicated autocommit connection with LISTEN; reconnect on failure."""
        import psycopg

        channel = self._db.dialect.notify_channel
        delay = 0.5
        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._db.psycopg_conninfo(), autocommit=True
                )
                async with conn:
                    await conn.execute(f'LISTEN "{channel}"')
                    ready.set()
                    self.wake()  # anything sent while we were away
                    delay = 0.5
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening whatever happened
                log.warning("listen connection lost", error=str(exc))
                ready.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
