"""The Idempotency-Key store port: a request reserves its key, then stores its answer.

A key is reserved under ``(key, scope)`` with the request's fingerprint, so of two racing
retries the database lets exactly one run; that one stores its final answer (``complete``)
or, when it failed, releases the key so a retry may run again. A reservation left pending
for too long belongs to a request that died mid-way and is taken over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class StoredAnswer:
    """What a key holds: still ``pending`` (its request runs), or ``done`` with the answer."""

    state: Literal["pending", "done"]
    fingerprint: str
    #: The stored answer (JSON) when ``done``; its shape is the caller's.
    answer: dict[str, Any] = field(default_factory=dict)


class IdempotencyStore(Protocol):
    async def reserve(self, key: str, scope: str, fingerprint: str) -> StoredAnswer | None:
        """Reserve ``key`` in ``scope``: None when this caller got it (and must complete or
        release it), else what the key holds."""
        ...

    async def complete(
        self, key: str, scope: str, fingerprint: str, answer: dict[str, Any]
    ) -> None:
        """Store the final answer of the request that reserved ``key``."""
        ...

    async def release(self, key: str, scope: str) -> None:
        """Forget ``key`` (its request failed): a retry may run again."""
        ...
