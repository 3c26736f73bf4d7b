"""Log append under a lease: chunks stored in order, a re-sent batch stored once."""

from __future__ import annotations

from sqlalchemy import func, insert, select

from rdev.ports.queue import LogLine

from ..engine import Database
from ..stamps import utcnow
from ..tables import build_logs, builds
from .leases import check_lease


class LogAppender:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append_logs(
        self,
        *,
        task_id: str,
        lease_token: str,
        chunks: list[LogLine],
        offset: int | None = None,
    ) -> int:
        """Store chunks in order after the last stored one; returns the last sequence number.

        ``offset`` is the index of the first chunk within this attempt's stream. A batch the
        worker re-sends (its first try reached us but the answer was lost) is then stored
        only once: chunks this attempt already has are skipped.
        """
        async with self.db.write() as conn:
            await check_lease(self.db, conn, task_id, lease_token)
            b = (
                await conn.execute(
                    select(builds.c.id, builds.c.attempts).where(builds.c.task_id == task_id)
                )
            ).one()
            last = (
                await conn.execute(
                    select(func.coalesce(func.max(build_logs.c.seq), 0)).where(
                        build_logs.c.build_id == b.id
                    )
                )
            ).scalar_one()
            if offset is not None:
                have = (
                    await conn.execute(
                        select(func.count()).where(
                            build_logs.c.build_id == b.id, build_logs.c.attempt == b.attempts
                        )
                    )
                ).scalar_one()
                chunks = chunks[max(0, have - offset) :]
            now = utcnow()
            if chunks:
                await conn.execute(
                    insert(build_logs),
                    [
                        {
                            "build_id": b.id,
                            "seq": last + i + 1,
                            "attempt": b.attempts,
                            "stream": c.get("stream", "out"),
                            "text": c["text"],
                            "at": now,
                        }
                        for i, c in enumerate(chunks)
                    ],
                )
                await self.db.dialect.notify_logs(conn)
            return int(last) + len(chunks)
