"""The API token store port: tokens are kept only as SHA-256 hashes of their value."""

from __future__ import annotations

import builtins
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


def hash_token(token: str) -> str:
    """The stored form of a token: tokens are high-entropy and random, so a plain SHA-256
    (no salt, no stretching) suffices and keeps the look-up one indexed equality."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """A stored token without its hash (the field order is the ``GET /tokens`` JSON)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    #: Project ids or names the token is limited to; None: every project.
    projects: tuple[str, ...] | None
    created_at: datetime
    revoked_at: datetime | None = None


class TokenStore(Protocol):
    async def create(
        self,
        *,
        name: str,
        token: str,
        scopes: builtins.list[str],
        projects: builtins.list[str] | None,
    ) -> str:
        """Store the token's hash; returns the new token's id."""
        ...

    async def lookup(self, token: str) -> ApiToken | None:
        """The live (not revoked) token with this value, else None."""
        ...

    async def count(self) -> int:
        """How many tokens exist, revoked ones included (none: the first start)."""
        ...

    async def list(self) -> builtins.list[ApiToken]:
        """Every token, oldest first, revoked ones included."""
        ...

    async def revoke(self, token_id: str) -> None: ...

    async def revoke_named(self, name: str) -> None:
        """Revoke every live token with this name."""
        ...
