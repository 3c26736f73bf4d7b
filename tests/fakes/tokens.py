"""In-memory TokenStore: the contract of ``adapters/db/tokens.py`` without SQL.

Like the table, it keeps only the tokens' hashes. Creation times come from the injected
clock and never repeat (the SQL store lists oldest first, then by id).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from rdev.ports.tokens import ApiToken, hash_token


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeTokenStore:
    clock: Callable[[], datetime] = _utc_now
    #: token hash -> the token
    by_hash: dict[str, ApiToken] = field(default_factory=dict)
    _last: datetime | None = None

    def _now(self) -> datetime:
        now = self.clock()
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now

    async def create(
        self,
        *,
        name: str,
        token: str,
        scopes: builtins.list[str],
        projects: builtins.list[str] | None,
    ) -> str:
        tid = uuid.uuid4().hex
        self.by_hash[hash_token(token)] = ApiToken(
            id=tid,
            name=name,
            scopes=tuple(scopes),
            projects=tuple(projects) if projects is not None else None,
            created_at=self._now(),
        )
        return tid

    async def lookup(self, token: str) -> ApiToken | None:
        found = self.by_hash.get(hash_token(token))
        return found if found is not None and found.revoked_at is None else None

    async def count(self) -> int:
        return len(self.by_hash)

    async def list(self) -> builtins.list[ApiToken]:
        return sorted(self.by_hash.values(), key=lambda t: (t.created_at, t.id))

    async def revoke(self, token_id: str) -> None:
        now = self._now()
        for key, t in self.by_hash.items():
            if t.id == token_id:
                self.by_hash[key] = replace(t, revoked_at=now)

    async def revoke_named(self, name: str) -> None:
        now = self._now()
        for key, t in self.by_hash.items():
            if t.name == name and t.revoked_at is None:
                self.by_hash[key] = replace(t, revoked_at=now)
