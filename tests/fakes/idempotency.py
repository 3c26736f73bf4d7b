"""In-memory IdempotencyStore: the contract of ``adapters/db/idempotency.py`` without SQL.

A key is reserved under ``(key, scope)``; a ``pending`` reservation older than
``stale_after`` seconds (by the injected clock) is taken over, a ``done`` one never expires.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rdev.ports.idempotency import StoredAnswer


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeIdempotencyStore:
    clock: Callable[[], datetime] = _utc_now
    stale_after: float = 600.0
    #: (key, scope) -> (what it holds, when it was reserved)
    entries: dict[tuple[str, str], tuple[StoredAnswer, datetime]] = field(default_factory=dict)

    async def reserve(self, key: str, scope: str, fingerprint: str) -> StoredAnswer | None:
        held = self.entries.get((key, scope))
        if held is not None:
            answer, reserved_at = held
            stale = self.clock() - reserved_at > timedelta(seconds=self.stale_after)
            if answer.state == "done" or not stale:
                return answer
        self.entries[(key, scope)] = (
            StoredAnswer(state="pending", fingerprint=fingerprint),
            self.clock(),
        )
        return None

    async def complete(
        self, key: str, scope: str, fingerprint: str, answer: dict[str, Any]
    ) -> None:
        held = self.entries.get((key, scope))
        if held is not None:
            stored = json.loads(json.dumps(answer))  # a JSON column: a copy
            done = StoredAnswer(state="done", fingerprint=fingerprint, answer=stored)
            self.entries[(key, scope)] = (done, held[1])

    async def release(self, key: str, scope: str) -> None:
        self.entries.pop((key, scope), None)
