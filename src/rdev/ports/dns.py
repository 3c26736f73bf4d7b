"""The DNSProvider port: place and remove CNAME aliases; what a drift check reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


class DNSError(Exception):
    """The DNS server failed or refused (message carries no secret)."""


class DNSConflict(DNSError):
    """Other records exist at that name; a CNAME cannot be placed there."""


class DNSProvider(Protocol):
    name: str

    async def add_cname(self, alias: str, target: str) -> None: ...

    async def remove_cname(self, alias: str, target: str | None = None) -> None: ...

    async def lookup_cname(self, alias: str) -> str | None:
        """The CNAME target as served now (absolute, trailing dot), or None."""
        ...


DriftKind = Literal["missing", "wrong", "unreachable"]


@dataclass(frozen=True)
class Drift:
    """One alias whose DNS differs from what rdev expects.

    ``kind``: ``missing`` (no CNAME served), ``wrong`` (a CNAME to another target), or
    ``unreachable`` (the lookup itself failed; ``error`` says why). ``actual`` is the
    served target (absolute, trailing dot) or None. ``fixed`` is True when ``fix`` repaired
    it; otherwise ``error`` says why a repair failed (e.g. other records hold the name).
    """

    alias: str
    expected: str
    actual: str | None
    kind: DriftKind
    fixed: bool = False
    error: str | None = None
