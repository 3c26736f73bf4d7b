"""API tokens: minting, authenticating (with a short cache), the bootstrap admin token."""

from __future__ import annotations

import builtins
import secrets
import time
from collections.abc import Callable

from rdev.domain.auth import SCOPES, Principal
from rdev.domain.errors import Unauthorized, ValidationFailed
from rdev.ports.tokens import ApiToken, TokenStore

TOKEN_PREFIX = "rdev_"  # noqa: S105 - a prefix, not a secret
_CACHE_SECONDS = 5.0


def new_token_value() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenService:
    def __init__(self, store: TokenStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        #: Monotonic seconds, for the authentication cache (a test may drive it by hand).
        self.clock = clock
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def create(
        self,
        name: str,
        scopes: builtins.list[str],
        projects: builtins.list[str] | None = None,
        value: str | None = None,
    ) -> tuple[str, str]:
        """Mint a token; returns (token id, the token itself — shown once, stored hashed)."""
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise ValidationFailed(
                f"unknown or missing scopes {unknown}; known: {list(SCOPES)}", field="scopes"
            )
        token = value or new_token_value()
        tid = await self.store.create(name=name, token=token, scopes=scopes, projects=projects)
        return tid, token

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing bearer token")
        now = self.clock()
        hit = self._cache.get(token)
        if hit and hit[0] > now:
            return hit[1]
        found = await self.store.lookup(token)
        if found is None:
            raise Unauthorized("invalid or revoked token")
        principal = Principal(
            token_id=found.id,
            name=found.name,
            scopes=frozenset(found.scopes),
            projects=frozenset(found.projects) if found.projects is not None else None,
        )
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[token] = (now + _CACHE_SECONDS, principal)
        return principal

    async def ensure_admin(self, configured: str | None) -> str | None:
        """On first start make the bootstrap admin token; returns it when newly generated.

        With ``RDEV_ADMIN_TOKEN`` set, that value is (idempotently) registered instead.
        """
        if configured:
            if await self.store.lookup(configured) is None:
                await self.create("admin", ["admin"], value=configured)
            return None
        if await self.store.count() == 0:
            _, token = await self.create("bootstrap-admin", ["admin"])
            return token
        return None

    async def list(self) -> builtins.list[ApiToken]:
        """Every token (never its value: only its hash is stored)."""
        return await self.store.list()

    async def revoke(self, token_id: str) -> None:
        await self.store.revoke(token_id)
        self._cache.clear()

    async def revoke_named(self, name: str) -> None:
        await self.store.revoke_named(name)
        self._cache.clear()
