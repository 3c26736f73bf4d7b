"""SQLite: one writer at a time, so the portable steps are exclusive; no NOTIFY.

Writes are serialised in-process and start with BEGIN IMMEDIATE (see the engine), so
another process waits on busy_timeout instead of failing late. Other processes' writes
are found by the claim notifier's periodic re-check and the live streams' poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from . import ClaimBatch, ClaimRequest, FinalWrite, Finished, NewBuild, Topic, portable

if TYPE_CHECKING:
    from rdev.adapters.db.engine import Database


class NoListener:
    """Nothing to listen to: SQLite has no NOTIFY."""

    def subscribe(
        self, topic: Topic, on_note: Callable[[str], None], on_connect: Callable[[], None]
    ) -> None:
        pass

    async def start(self) -> None:
        pass

    def start_soon(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class SqliteDialect:
    name = "sqlite"
    notify_channel: str | None = None

    def __init__(self) -> None:
        self._write_lock = asyncio.Lock()
        self.listener = NoListener()

    def write_guard(self) -> AbstractAsyncContextManager[Any]:
        return self._write_lock

    def lock_for_claim(self, stmt: Select[Any]) -> Select[Any]:
        return stmt  # the write lock already makes the claim exclusive

    def lock_row(self, stmt: Select[Any], of: Any = None) -> Select[Any]:
        return stmt

    async def claim(self, conn: AsyncConnection, req: ClaimRequest) -> ClaimBatch:
        return await portable.claim(conn, req, portable.claimable(req))

    async def finish(
        self, conn: AsyncConnection, items: list[FinalWrite], *, now: datetime, actor: str
    ) -> dict[str, Finished]:
        return await portable.finish(conn, items, now=now, actor=actor)

    async def submit(self, db: Database, new: NewBuild) -> None:
        async with db.write() as conn:
            await portable.submit(conn, new.build, new.task, new.event)

    async def notify_work(self, conn: AsyncConnection) -> None:
        pass

    async def notify_logs(self, conn: AsyncConnection) -> None:
        pass
